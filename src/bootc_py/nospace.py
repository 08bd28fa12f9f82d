"""ENOSPC as one line naming the filesystem and how much was needed."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from bootc_py.disk.model import human_size
from bootc_py.errors import NoSpaceError


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
