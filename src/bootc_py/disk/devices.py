"""Small helpers on block device nodes: partition names, probing, re-reading partition tables."""

from __future__ import annotations

import logging
import os
import re
import stat
import time
from collections.abc import Mapping
from pathlib import Path

from bootc_py.disk.discover import SECTOR, parse_export
from bootc_py.errors import DiskError
from bootc_py.run import DEVICE_TIMEOUT, have, run

log = logging.getLogger(__name__)

WAIT_TIMEOUT = 15.0


def partition_path(device: Path | str, number: int) -> Path:
    """/dev/sda + 1 -> /dev/sda1; /dev/nvme0n1, /dev/loop0, /dev/mmcblk0 + 1 -> ...p1."""
    dev = str(device)
    # The kernel inserts a 'p' when the disk's name ends in a digit.
    sep = "p" if re.search(r"\d$", dev) else ""
    return Path(f"{dev}{sep}{number}")


def sysfs_dir(device: Path | str) -> Path:
    """/sys/class/block/<name> of a device node (by device number: works for any node name)."""
    st = os.stat(device)
    if not stat.S_ISBLK(st.st_mode):
        raise DiskError(f"{device} is not a block device")
    return Path(f"/sys/dev/block/{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}").resolve()


def size_and_sector(device: Path | str) -> tuple[int, int]:
    """(size in bytes, logical sector size) from sysfs."""
    sysdir = sysfs_dir(device)
    size = int((sysdir / "size").read_text()) * SECTOR
    sector = int((sysdir / "queue" / "logical_block_size").read_text())
    return size, sector


def kernel_partitions(device: Path | str) -> dict[int, tuple[int, int]]:
    """Partitions the kernel knows on `device`: number -> (start, size) in bytes."""
    sysdir = sysfs_dir(device)
    out = {}
    for child in sysdir.iterdir():
        part = child / "partition"
        if child.is_dir() and part.exists():
            start = int((child / "start").read_text()) * SECTOR
            size = int((child / "size").read_text()) * SECTOR
            out[int(part.read_text())] = (start, size)
    return out


def probe(node: Path | str) -> dict[str, str]:
    """`blkid -p` of a device: TYPE, LABEL, UUID, PART_ENTRY_UUID, PART_ENTRY_TYPE, ..."""
    res = run(["blkid", "-p", "-o", "export", node], check=False, capture=True,
              timeout=DEVICE_TIMEOUT)
    if res.returncode == 2:
        return {}
    if res.returncode != 0:
        raise DiskError(f"cannot probe {node}: blkid exited with {res.returncode}",
                        res.stderr.strip() or None)
    return parse_export(res.stdout)


def fs_uuid(node: Path | str) -> str:
    """The filesystem UUID on `node` (read from disk, not from a cache)."""
    uuid = probe(node).get("UUID")
    if not uuid:
        raise DiskError(f"no filesystem UUID found on {node}")
    return uuid


def part_uuid(node: Path | str) -> str:
    """The GPT partition's unique GUID (PARTUUID), lower case."""
    uuid = probe(node).get("PART_ENTRY_UUID")
    if not uuid:
        raise DiskError(f"no partition UUID found on {node}")
    return uuid.lower()


def is_loop(device: Path | str) -> bool:
    return sysfs_dir(device).name.startswith("loop")


def reread_partitions(device: Path | str) -> None:
    """Make the kernel's view of the partitions match the table on disk.

    Loop devices get `partx -u`, which adds, resizes and deletes entries one by one: on this
    kind of host the kernel's own scan (BLKRRPART, losetup -P) finds no partitions on a loop
    device. Other disks get `blockdev --rereadpt`, falling back to partx when it is refused.
    """
    if not is_loop(device):
        res = run(["blockdev", "--rereadpt", device], check=False, timeout=DEVICE_TIMEOUT)
        if res.returncode == 0:
            settle()
            return
        log.debug("blockdev --rereadpt %s failed, falling back to partx", device)
    # partx -u does not add anything when the kernel knows no partition yet.
    run(["partx", "-u", device], check=False, timeout=DEVICE_TIMEOUT)
    if not kernel_partitions(device):
        run(["partx", "-a", device], check=False, timeout=DEVICE_TIMEOUT)
    settle()


def settle() -> None:
    """Where udev runs (a real host), let it finish processing devices: the /dev/disk/by-*
    links and the properties lsblk reads (filesystem and partition-table types, serial)."""
    if Path("/run/udev/control").exists() and have("udevadm"):
        run(["udevadm", "settle", "--timeout=30"], check=False, timeout=DEVICE_TIMEOUT)


def wait_for_partitions(device: Path | str, expected: Mapping[int, tuple[int, int]],
                        *, timeout: float = WAIT_TIMEOUT) -> dict[int, Path]:
    """Wait until the kernel shows exactly `expected` (number -> (start, size) bytes) and each
    partition's node exists in /dev; return the nodes."""
    deadline = time.monotonic() + timeout
    while True:
        seen = kernel_partitions(device)
        nodes = {n: partition_path(device, n) for n in expected}
        if seen == dict(expected) and all(_is_blk(p) for p in nodes.values()):
            return nodes
        if time.monotonic() > deadline:
            raise DiskError(
                f"the kernel did not pick up the new partitions of {device} within {timeout:.0f}s "
                f"(it shows {sorted(seen)}, expected {sorted(expected)})",
                "is something holding the disk open? check with 'lsblk' and 'fuser -vm'")
        time.sleep(0.1)


def _is_blk(path: Path) -> bool:
    try:
        return stat.S_ISBLK(path.stat().st_mode)
    except OSError:
        return False
