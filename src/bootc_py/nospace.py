"""ENOSPC as one line naming the filesystem and how much was needed."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bootc_py.disk.model import human_size
from bootc_py.errors import CommandNoSpaceError, NoSpaceError

# How programs say a filesystem is full (stderr of every failed run is searched): strerror
# (ENOSPC), and ostree refusing to go below its min-free-space-percent/-size reserve.
ENOSPC_TEXTS = ("No space left on device", "would be exceeded, at least")


def says_no_space(stderr: str) -> bool:
    return any(text in stderr for text in ENOSPC_TEXTS)


def mountpoint_of(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not path.exists():
        path = path.parent
    while not os.path.ismount(path):
        path = path.parent
    return path


def no_space(path: Path, needed: int | None, what: str) -> NoSpaceError:
    """The error for `what` (e.g. 'the layer sha256:ab12') not fitting at `path`."""
    mnt = mountpoint_of(path)
    free = shutil.disk_usage(mnt).free
    need = f" needs {human_size(needed)}," if needed else ""
    return NoSpaceError(f"no space left on the filesystem at {mnt}: {what}{need} "
                        f"{human_size(free)} free",
                        f"free some space there, or use another directory ({path})")


def _candidates(argv: Sequence[str], cwd: Path | None) -> list[Path]:
    """Absolute paths a program was given (`/x`, `--opt=/x`), and where it ran."""
    found = [] if cwd is None else [cwd]
    for arg in argv[1:]:
        value = arg.split("=", 1)[1] if arg.startswith("-") and "=" in arg else arg
        if value.startswith("/") and not value.startswith("/dev/"):
            found.append(Path(value))
    return found


def _cwd() -> Path | None:
    try:
        return Path.cwd()
    except OSError:  # the directory bootc-py runs in was removed
        return None


def program_out_of_space(argv: Sequence[str], returncode: int, stderr: str,
                         writes: Path | None, needed: int | None,
                         cwd: Path | None = None) -> CommandNoSpaceError:
    """The error for a program that failed with ENOSPC. `writes` is where it was writing,
    when the caller knows; otherwise the filesystem with the least free space among the paths
    it was given is the one that filled up (a full one has next to nothing left)."""
    program = Path(argv[0]).name
    if writes is not None:
        full = no_space(writes, needed, f"{program} failed writing {writes}")
        return CommandNoSpaceError(argv, returncode, stderr, full.message, full.hint)
    candidates = _candidates(argv, cwd or _cwd())
    if not candidates:
        return CommandNoSpaceError(
            argv, returncode, stderr,
            f"no space left on device: {program} failed, and names no path to tell where",
            "free some space on the filesystem it writes to (see 'df -h'), then retry")

    def free(p: Path) -> int:
        return shutil.disk_usage(mountpoint_of(p)).free
    where = min(candidates, key=free)
    full = no_space(where, needed, f"{program} failed writing to {where}")
    return CommandNoSpaceError(argv, returncode, stderr, full.message, full.hint)


def _stdout_file() -> Path | None:
    try:
        if stat.S_ISREG(os.fstat(1).st_mode):
            return Path(os.readlink("/proc/self/fd/1"))
    except OSError:
        pass
    return None


def unnamed_write(cache_dir: Path) -> NoSpaceError:
    """ENOSPC from a write that named no file (a file object's write or flush: standard output
    redirected to a full filesystem, a file written in place): the fullest of the places
    bootc-py writes to is the one that filled up."""
    stdout = _stdout_file()
    places = [p for p in (stdout, _cwd(), Path(tempfile.gettempdir()), cache_dir) if p]
    where = min(places, key=lambda p: shutil.disk_usage(mountpoint_of(p)).free)
    what = "writing standard output" if where == stdout else "a write failed"
    return no_space(where, None, f"{what} ({where})" if where == stdout else what)
