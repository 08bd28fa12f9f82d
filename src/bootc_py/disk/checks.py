"""Refuse unsuitable install targets before anything is written, with a one-line reason."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from bootc_py.disk.model import DiskInfo, InUse, UseKind, human_size
from bootc_py.errors import DiskError


def check_device(device: Path, *, wipe: bool, min_size: int) -> DiskInfo:
    """Discover `device` and check it (the installer's one call); returns what was found."""
    from bootc_py.disk.discover import disk_info  # only here: checks stay importable w/o pyudev

    info = disk_info(device)
    check_target(info, wipe=wipe, min_size=min_size)
    return info


def check_target(disk: DiskInfo, *, wipe: bool, min_size: int) -> None:
    """Raise DiskError if bootc-py must not (or cannot) install onto `disk`.

    Busy disks (the running root, mounted, swap, LVM, RAID, device-mapper) are refused even
    with `wipe`; a disk that merely holds data is refused only without it.
    """
    path = disk.path
    if disk.is_partition:
        parent = f" ({disk.parent})" if disk.parent else ""
        raise DiskError(f"{path} is a partition, not a whole disk",
                        f"give the disk it belongs to{parent}; bootc-py partitions it itself")
    if disk.holds_root:
        raise DiskError(f"{path} holds the running system's root filesystem",
                        "choose another disk: bootc-py never overwrites the system it runs on")
    if disk.mounts:
        m = disk.mounts[0]
        more = f" (and {len(disk.mounts) - 1} more)" if len(disk.mounts) > 1 else ""
        where = path if m.device == str(path) else f"{path}: {m.device}"
        raise DiskError(f"{where} is mounted at {m.mountpoint}{more}",
                        f"unmount it first: umount {m.mountpoint}")
    for use in disk.in_use:
        raise DiskError(*_busy(path, use))
    if disk.read_only:
        raise DiskError(f"{path} is read-only",
                        "check the write-protect switch, or 'blockdev --setrw'")
    if disk.size_bytes == 0:
        raise DiskError(f"{path} has no medium (size 0)",
                        "is the loop device attached, the card inserted?")
    if disk.size_bytes < min_size:
        raise DiskError(
            f"{path} is too small: {human_size(disk.size_bytes)} ({disk.size_bytes} bytes), "
            f"need at least {human_size(min_size)} ({min_size} bytes)",
            "use a bigger disk")
    if not wipe and not disk.is_empty:
        raise DiskError(f"{path} is not empty: it has {describe_contents(disk)}; "
                        "use --wipe to erase it",
                        f"--wipe destroys everything on {path}")


def check_image_file_free(file: Path, attached: Sequence[DiskInfo]) -> None:
    """Refuse a disk image file that is attached to a loop device already (`losetup -j`):
    writing it through a second one would reformat it under the first one's mounts."""
    for info in attached:
        if info.mounts:
            m = info.mounts[0]
            raise DiskError(f"{file} is in use: {m.device} (attached to it) is mounted at "
                            f"{m.mountpoint}",
                            f"unmount it and detach the loop device first: umount "
                            f"{m.mountpoint}; losetup --detach {info.path}")
    for info in attached:
        raise DiskError(f"{file} is already attached to the loop device {info.path}",
                        f"detach it first: losetup --detach {info.path}")


def _busy(path: Path, use: InUse) -> tuple[str, str]:
    who = str(path) if use.device == str(path) else f"{path}: {use.device}"
    if use.kind is UseKind.SWAP:
        what = use.detail if use.detail.startswith("swap file") else "active swap"
        name = use.detail.removeprefix("swap file ")
        return f"{who} is in use as {what}", f"turn it off first: swapoff {name}"
    if use.kind is UseKind.LVM:
        vg = lvm_vg_name(use.detail)
        return (f"{who} is an LVM physical volume of the active volume group {vg}",
                f"deactivate it first: vgchange -an {vg}")
    if use.kind is UseKind.RAID:
        return (f"{who} is a member of the RAID array {use.detail}",
                f"stop the array first: mdadm --stop /dev/{use.detail}")
    if use.kind is UseKind.CRYPT:
        return (f"{who} is an open encrypted volume ({use.detail})",
                f"close it first: cryptsetup close {use.detail}")
    return (f"{who} is held by the device-mapper device {use.detail}",
            f"remove it first: dmsetup remove {use.detail}")


def lvm_vg_name(dm_name: str) -> str:
    """'vg--data-root' -> 'vg-data': LVM joins VG and LV with '-' and doubles dashes in names."""
    i = 0
    while i < len(dm_name):
        if dm_name[i] == "-":
            if dm_name[i + 1:i + 2] == "-":
                i += 2
                continue
            return dm_name[:i].replace("--", "-")
        i += 1
    return dm_name.replace("--", "-")


def describe_contents(disk: DiskInfo) -> str:
    """'a gpt partition table with 4 partitions (vfat, ext4, xfs)' or 'a signature (xfs)'."""
    if disk.partitions or disk.pttype:
        n = len(disk.partitions)
        table = f"a {disk.pttype} partition table" if disk.pttype else "partitions"
        text = f"{table} with {n} partition{'s' if n != 1 else ''}"
        fstypes = [p.fstype for p in disk.partitions if p.fstype]
        if fstypes:
            text += f" ({', '.join(dict.fromkeys(fstypes))})"
        return text
    n = len(disk.signatures)
    return f"{'a signature' if n == 1 else 'signatures'} ({', '.join(disk.signatures)})"
