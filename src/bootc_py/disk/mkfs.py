"""Making filesystems: one argv builder per filesystem type (an explicit registry)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bootc_py.errors import UsageError
from bootc_py.run import run

Argv = list[str]


def _vfat(dev: Path, label: str | None) -> Argv:
    return ["mkfs.vfat", "-F", "32", *(["-n", label] if label else []), str(dev)]


def _ext4(dev: Path, label: str | None) -> Argv:
    # -F: the partition may still carry an old signature; the disk was chosen to be erased.
    return ["mkfs.ext4", "-F", "-q", *(["-L", label] if label else []), str(dev)]


def _xfs(dev: Path, label: str | None) -> Argv:
    return ["mkfs.xfs", "-f", "-q", *(["-L", label] if label else []), str(dev)]


def _btrfs(dev: Path, label: str | None) -> Argv:
    return ["mkfs.btrfs", "-f", "-q", *(["-L", label] if label else []), str(dev)]


def _swap(dev: Path, label: str | None) -> Argv:
    return ["mkswap", "-q", *(["-L", label] if label else []), str(dev)]


MKFS: dict[str, Callable[[Path, str | None], Argv]] = {
    "vfat": _vfat,
    "ext4": _ext4,
    "xfs": _xfs,
    "btrfs": _btrfs,
    "swap": _swap,  # kickstart `part swap` (disk/layout.py)
}


def mkfs_argv(device: Path, fstype: str, label: str | None = None) -> Argv:
    try:
        builder = MKFS[fstype]
    except KeyError:
        raise UsageError(f"unknown filesystem '{fstype}'",
                         f"choose one of: {', '.join(MKFS)}") from None
    return builder(device, label)


def make_filesystem(device: Path, fstype: str, label: str | None = None) -> None:
    """Create a `fstype` filesystem labelled `label` on `device`, erasing what was there."""
    run(mkfs_argv(device, fstype, label), quiet=True)
