"""The one subprocess boundary: every external program bootc-py runs goes through here."""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from bootc_py.errors import CommandError, TimeoutExpired, ToolMissingError
from bootc_py.nospace import program_out_of_space, says_no_space

log = logging.getLogger("bootc_py.run")

# Which Debian package provides a program, so a missing one gets a useful hint.
PACKAGE_OF: dict[str, str] = {
    "ostree": "ostree",
    "skopeo": "skopeo",
    "umoci": "umoci",
    "podman": "podman",
    "mkfs.xfs": "xfsprogs",
    "mkfs.ext4": "e2fsprogs",
    "mkfs.btrfs": "btrfs-progs",
    "mkfs.vfat": "dosfstools",
    "mcopy": "mtools",
    "mmd": "mtools",
    "mdir": "mtools",
    "mtype": "mtools",
    "mdel": "mtools",
    "mdeltree": "mtools",
    "grub-install": "grub2-common",
    "grub-mkimage": "grub-common",
    "qemu-img": "qemu-utils",
    "qemu-system-x86_64": "qemu-system-x86",
    "losetup": "mount",
    "partx": "util-linux",
    "blkid": "util-linux",
    "wipefs": "util-linux",
    "sgdisk": "gdisk",
    "xorriso": "xorriso",
    "mksquashfs": "squashfs-tools",
    "chattr": "e2fsprogs",
    "mmdebstrap": "mmdebstrap",
    "docker-registry": "docker-registry",
    "udevadm": "udev",
}

STDERR_TAIL = 4000
# No program bootc-py runs should take longer; callers that can, pass their own timeout.
DEFAULT_TIMEOUT = 3600.0
# A device query or partition-table change (losetup, partx, blkid, blockdev, wipefs) answers in
# well under a second; two minutes without an answer is a hung device, not a slow one.
DEVICE_TIMEOUT = 120.0
# mount may replay a journal and umount flush dirty pages of a whole install to a slow disk.
MOUNT_TIMEOUT = 600.0
STOP_GRACE = 5.0  # seconds a child gets to exit after SIGTERM before SIGKILL


def which(tool: str) -> str:
    """Absolute path of `tool`, or ToolMissingError naming the package to install."""
    found = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin:/usr/bin:/bin")
    if not found:
        raise ToolMissingError(tool, PACKAGE_OF.get(tool))
    return found


def have(tool: str) -> bool:
    try:
        which(tool)
    except ToolMissingError:
        return False
    return True


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    check: bool = True,
    capture: bool = False,
    input: bytes | str | None = None,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    quiet: bool = False,
    timeout: float | None = DEFAULT_TIMEOUT,
    own_session: bool = False,
    writes: str | os.PathLike[str] | None = None,
    needs: int | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a program; raise CommandError on failure with the tail of its stderr.

    stdout is captured (as text) only with `capture=True`; stderr is always captured so a
    failure can say why, and is echoed at debug level. `quiet` keeps stdout off the terminal.
    stdin is /dev/null unless `input` is given (nothing may wait for a terminal, e.g. under
    systemd); captured output is produced with LC_ALL=C so parsing never meets a translation.
    A program still running after `timeout` seconds is killed: TimeoutExpired. With
    `own_session` it runs in a session of its own and the whole session is killed, so a child
    it left behind (a health-check script's `sleep &`) cannot hold its pipes open.
    A failure with ENOSPC raises CommandNoSpaceError naming the filesystem that filled up:
    the one holding `writes` (with `needs` bytes, when the caller can tell), or the fullest of
    those the arguments name.
    """
    args = [os.fspath(a) for a in argv]
    exe = which(args[0])
    full_env = None
    if env is not None or capture:
        full_env = dict(os.environ)
        if capture:
            full_env["LC_ALL"] = "C"
        full_env.update(env or {})
    log.debug("run: %s", shlex.join(args))
    data = input.encode() if isinstance(input, str) else input
    started = time.monotonic()
    try:
        with subprocess.Popen(
            [exe, *args[1:]],
            stdin=subprocess.PIPE if data is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE if (capture or quiet) else None,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=full_env,
            start_new_session=own_session,
        ) as proc:
            try:
                out, err = proc.communicate(data, timeout=timeout)
            except subprocess.TimeoutExpired as exc:
                _stop(proc, own_session, grace=0)
                raise TimeoutExpired(f"{Path(args[0]).name} did not finish within {timeout:g} s "
                                     f"and was stopped: {shlex.join(args)[:200]}",
                                     "retry; if it keeps happening, look for a hung device or "
                                     "network") from exc
            except BaseException:  # Ctrl-C, SIGTERM/SIGHUP (signals.py): stop it, then unwind
                _stop(proc, own_session)
                raise
    except OSError as exc:  # e.g. exec format error, permission denied
        raise CommandError(args, 127, str(exc)) from exc
    # The wall time of every program: `-vv` is the profile of a verb.
    log.debug("run: %s exited %d after %.3f s", Path(args[0]).name, proc.returncode,
              time.monotonic() - started)
    stdout = out.decode(errors="replace") if out is not None else ""
    stderr = err.decode(errors="replace") if err is not None else ""
    if stderr.strip():
        log.debug("%s stderr: %s", Path(args[0]).name, stderr.strip()[-STDERR_TAIL:])
    if check and proc.returncode != 0:
        if says_no_space(stderr):
            raise program_out_of_space(args, proc.returncode, stderr[-STDERR_TAIL:],
                                       Path(writes) if writes is not None else None, needs,
                                       Path(cwd) if cwd is not None else None)
        raise CommandError(args, proc.returncode, stderr[-STDERR_TAIL:])
    return subprocess.CompletedProcess(args, proc.returncode, stdout, stderr)


def _stop(proc: subprocess.Popen[bytes], session: bool, grace: float = STOP_GRACE) -> None:
    """Ask a child to stop (SIGTERM, so it can clean up), kill it if it will not, and reap it:
    no child outlives the cleanup that follows, none is left defunct. With `session` the whole
    session goes (a health-check script's `sleep &` cannot keep the pipes open)."""
    def send(sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            if session:
                os.killpg(proc.pid, sig)
            else:
                proc.send_signal(sig)
    if proc.poll() is not None and not session:
        return
    if grace > 0:
        send(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace)
    send(signal.SIGKILL)
    with contextlib.suppress(BaseException):
        proc.communicate(timeout=STOP_GRACE)
    proc.wait()


def output(
    argv: Sequence[str | os.PathLike[str]],
    *,
    input: bytes | str | None = None,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
) -> str:
    """Run a program and return its stdout (stripped of the trailing newline)."""
    return run(argv, capture=True, input=input, cwd=cwd, env=env,
               timeout=timeout).stdout.rstrip("\n")
