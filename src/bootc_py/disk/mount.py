"""Mounts as context managers; `Mounts` unmounts a whole tree in reverse order."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from bootc_py.disk.discover import parse_mountinfo
from bootc_py.errors import BootcPyError, DiskError
from bootc_py.run import DEVICE_TIMEOUT, MOUNT_TIMEOUT, run

log = logging.getLogger(__name__)

UMOUNT_TRIES = 8  # 0.1 s doubling: ~25 s for a process to leave the tree


def is_mountpoint(path: Path) -> bool:
    """Whether something is mounted exactly at `path` (in this mount namespace)."""
    target = os.path.realpath(path)
    text = Path("/proc/self/mountinfo").read_text()
    return any(m.mountpoint == target for m in parse_mountinfo(text))


class Mount:
    """`with Mount(source, target, fstype, options):` mounts, and unmounts on exit: retried a
    few times (a process may still be leaving the tree), then lazily as a last resort."""

    def __init__(self, source: Path | str, target: Path, fstype: str | None = None,
                 options: Sequence[str] = (), *, mkdir: bool = True,
                 cwd: Path | None = None) -> None:
        self.source = str(source)
        self.target = Path(target)
        self.fstype = fstype
        self.options = tuple(options)
        self.mkdir = mkdir
        self.cwd = cwd  # what relative paths in the options are relative to (overlayfs')
        self.mounted = False

    def mount(self) -> Path:
        if self.mounted:
            return self.target
        if self.mkdir:
            self.target.mkdir(parents=True, exist_ok=True)
        argv = ["mount"]
        if self.fstype:
            argv += ["-t", self.fstype]
        if self.options:
            argv += ["-o", ",".join(self.options)]
        run([*argv, self.source, str(self.target)], timeout=MOUNT_TIMEOUT, cwd=self.cwd)
        self.mounted = True
        log.debug("mounted %s on %s", self.source, self.target)
        return self.target

    def thaw(self) -> None:
        """Unfreeze the filesystem if a program stopped mid-way left it frozen (ostree freezes
        /boot to sync it; a signal at deploy can kill it then). umount of a frozen filesystem
        succeeds, but its superblock stays frozen and alive and pins the loop device for
        good. EINVAL (not frozen) and EOPNOTSUPP are ignored."""
        if self.mounted:
            run(["fsfreeze", "--unfreeze", str(self.target)], check=False, capture=True,
                timeout=DEVICE_TIMEOUT)

    def unmount(self) -> None:
        if not self.mounted:
            return
        self.mounted = False
        delay = 0.1
        for attempt in range(1, UMOUNT_TRIES + 1):
            res = run(["umount", str(self.target)], check=False, timeout=MOUNT_TIMEOUT)
            if res.returncode == 0 or not is_mountpoint(self.target):
                log.debug("unmounted %s", self.target)
                return
            log.debug("umount %s failed (try %d): %s", self.target, attempt, res.stderr.strip())
            time.sleep(delay)
            delay *= 2
        log.warning("%s is still busy; detaching it lazily (umount -l)", self.target)
        res = run(["umount", "--lazy", str(self.target)], check=False, timeout=DEVICE_TIMEOUT)
        if res.returncode != 0 and is_mountpoint(self.target):
            raise DiskError(f"cannot unmount {self.target}: {res.stderr.strip()}")

    def __enter__(self) -> Mount:
        self.mount()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if exc is not None:     # unwinding from a failure or a signal: maybe frozen
                self.thaw()
            self.unmount()
        except BootcPyError:
            if exc is None:
                raise
            log.error("while cleaning up: could not unmount %s", self.target, exc_info=True)


class Mounts:
    """A stack of mounts (root, then /boot inside it, ...) unmounted in reverse order."""

    def __init__(self) -> None:
        self._stack = contextlib.ExitStack()
        self._mounts: list[Mount] = []

    def mount(self, source: Path | str, target: Path, fstype: str | None = None,
              options: Sequence[str] = ()) -> Path:
        m = self._stack.enter_context(Mount(source, target, fstype, options))
        self._mounts.append(m)
        return m.target

    def bind(self, source: Path, target: Path, *, read_only: bool = False) -> Path:
        path = self.mount(source, target, options=("bind",))
        if read_only:  # a bind mount only becomes read-only on a remount
            run(["mount", "-o", "remount,bind,ro", str(path)], timeout=MOUNT_TIMEOUT)
        return path

    @property
    def targets(self) -> tuple[Path, ...]:
        return tuple(m.target for m in self._mounts if m.mounted)

    def close(self) -> None:
        self._mounts.clear()
        self._stack.close()

    def __enter__(self) -> Mounts:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc is None:
            self.close()
            return
        try:
            for m in reversed(self._mounts):   # unwinding: a killed program may have frozen one
                m.thaw()
            self.close()
        except BootcPyError:
            log.error("while cleaning up mounts", exc_info=True)
