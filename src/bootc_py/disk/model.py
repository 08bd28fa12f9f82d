"""Plain data about disks: what discovery returns and what checks and plans read.

No I/O here. `DiskInfo` round-trips through JSON so tests can plan and check against recorded
snapshots of real devices (tests/unit/data/disks/*.json).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30

SNAPSHOT_VERSION = 1


class UseKind(StrEnum):
    """Why a disk is busy: each of these makes installing onto it impossible, even with --wipe."""

    ROOT = "root"    # holds the filesystem the running system booted from
    SWAP = "swap"    # active swap partition or swap file on one of its filesystems
    LVM = "lvm"      # physical volume of an active LVM volume
    RAID = "raid"    # member of an assembled md RAID array
    CRYPT = "crypt"  # opened LUKS/dm-crypt mapping
    DM = "dm"        # any other device-mapper holder (multipath, kpartx, dmsetup)


@dataclass(frozen=True)
class InUse:
    kind: UseKind
    device: str      # the disk or partition that is busy, e.g. /dev/sda2
    detail: str      # what holds it, e.g. "vg0-root" or "md127" or "/swapfile"


@dataclass(frozen=True)
class MountEntry:
    device: str      # the disk, partition or holder that is mounted
    mountpoint: str
    fstype: str


@dataclass(frozen=True)
class PartitionInfo:
    path: Path
    number: int
    start: int                  # bytes from the start of the disk
    size: int                   # bytes
    fstype: str | None = None   # blkid TYPE ("a+b" when several signatures disagree)
    label: str | None = None
    uuid: str | None = None     # filesystem UUID
    parttype: str | None = None  # partition type GUID (upper case) or MBR type (0x83)
    partuuid: str | None = None
    name: str | None = None     # GPT partition name


@dataclass(frozen=True)
class DiskInfo:
    path: Path
    size_bytes: int
    logical_sector_size: int = 512
    physical_sector_size: int = 512
    model: str | None = None
    is_loop: bool = False
    backing_file: str | None = None
    is_partition: bool = False          # the path names a partition, not a whole disk
    parent: Path | None = None          # its disk, when is_partition
    read_only: bool = False
    pttype: str | None = None           # "gpt", "dos" or None
    signatures: tuple[str, ...] = ()    # whole-device signatures (wipefs), e.g. gpt, PMBR, xfs
    partitions: tuple[PartitionInfo, ...] = ()
    mounts: tuple[MountEntry, ...] = ()
    in_use: tuple[InUse, ...] = field(default=())

    @property
    def mounted_paths(self) -> tuple[str, ...]:
        """Mountpoints of anything on this disk (itself, its partitions, their holders)."""
        return tuple(m.mountpoint for m in self.mounts)

    @property
    def holds_root(self) -> bool:
        return any(u.kind is UseKind.ROOT for u in self.in_use)

    @property
    def is_empty(self) -> bool:
        """No partition table, no partitions, no filesystem or other signature."""
        return not (self.pttype or self.signatures or self.partitions)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["snapshot_version"] = SNAPSHOT_VERSION
        return _jsonable(data)  # type: ignore[no-any-return]

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DiskInfo:
        # Keys starting with "_" are notes in hand-edited snapshots.
        d = {k: v for k, v in data.items() if k != "snapshot_version" and not k.startswith("_")}
        d["path"] = Path(d["path"])
        d["parent"] = Path(d["parent"]) if d.get("parent") else None
        d["signatures"] = tuple(d.get("signatures", ()))
        d["partitions"] = tuple(
            PartitionInfo(**{**p, "path": Path(p["path"])}) for p in d.get("partitions", ())
        )
        d["mounts"] = tuple(MountEntry(**m) for m in d.get("mounts", ()))
        d["in_use"] = tuple(
            InUse(kind=UseKind(u["kind"]), device=u["device"], detail=u["detail"])
            for u in d.get("in_use", ())
        )
        return cls(**d)

    @classmethod
    def from_json(cls, text: str) -> DiskInfo:
        return cls.from_dict(json.loads(text))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, StrEnum):
        return value.value
    return value


def human_size(n: int) -> str:
    """Short and never misleading: '1 GiB', '2.5 GiB', '2051 MiB' (not '2.0 GiB'), '18.5 GiB'.

    A unit is used when the value is exact in it to one decimal, or large enough (>= 10) for
    the rounding not to matter; otherwise the next smaller unit is tried.
    """
    for unit, factor in (("TiB", 1 << 40), ("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n < factor:
            continue
        if n % factor == 0:
            return f"{n // factor} {unit}"
        if (n * 10) % factor == 0 or n >= 10 * factor:
            return f"{n / factor:.1f} {unit}"
    return f"{n} B"


def align_up(n: int, alignment: int) -> int:
    return -(-n // alignment) * alignment


def align_down(n: int, alignment: int) -> int:
    return n // alignment * alignment
