"""The partition plan: a pure function from a disk's size to the GPT layout bootc-py writes.

Layout (DESIGN.md, bootc's to-disk): BIOS boot 1 MiB (only for BIOS GRUB), ESP 512 MiB vfat,
/boot 1 GiB ext4, root taking the rest with the discoverable-partitions root type. Every
partition starts and ends on a 1 MiB boundary, whatever the sector size.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from bootc_py.disk.model import GiB, MiB, align_down, align_up, human_size
from bootc_py.errors import DiskError, UsageError

ALIGNMENT = MiB
BIOS_BOOT_SIZE = MiB
ESP_SIZE = 512 * MiB
BOOT_SIZE = GiB
# Below this a root filesystem is useless (mkfs.xfs itself refuses under 300 MiB).
MIN_ROOT_SIZE = 512 * MiB
# GPT keeps a backup header (one sector) and 128 entries of 128 bytes at the end of the disk.
GPT_ENTRIES_BYTES = 128 * 128

ROOT_FILESYSTEMS = ("xfs", "ext4", "btrfs")
BOOTLOADERS = ("grub", "systemd", "none")


class Role(StrEnum):
    BIOS_BOOT = "bios-boot"
    ESP = "esp"
    BOOT = "boot"
    ROOT = "root"
    # Custom layouts (disk/layout.py):
    DATA = "data"          # another filesystem (/var, /var/log, ...)
    SWAP = "swap"
    LVM_PV = "lvm-pv"
    BTRFS = "btrfs"        # a member of a btrfs volume


class PartType(StrEnum):
    """GPT partition type GUIDs (upper case, as sgdisk prints them)."""

    BIOS_BOOT = "21686148-6449-6E6F-744E-656564454649"
    ESP = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
    XBOOTLDR = "BC13C2FF-59E6-4262-A352-B275FD6F7172"
    LINUX_FS = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
    ROOT_X86_64 = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"
    ROOT_AARCH64 = "B921B045-1DF0-41C3-AF44-4C6F280D3FAE"


TYPE_NAMES: dict[str, str] = {
    PartType.BIOS_BOOT: "BIOS boot",
    PartType.ESP: "EFI System",
    PartType.XBOOTLDR: "XBOOTLDR",
    PartType.LINUX_FS: "Linux filesystem",
    PartType.ROOT_X86_64: "Linux root (x86-64)",
    PartType.ROOT_AARCH64: "Linux root (ARM64)",
    "4D21B016-B534-45C2-A9FB-5C16E091FD2D": "Linux /var",
    "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F": "Linux swap",
    "E6D6D379-F507-44C2-A23C-238F2A3DF928": "Linux LVM",
}

# The Discoverable Partitions Specification's root type for each architecture.
ROOT_TYPES: dict[str, PartType] = {
    "x86_64": PartType.ROOT_X86_64,
    "aarch64": PartType.ROOT_AARCH64,
}


@dataclass(frozen=True)
class PlannedPartition:
    number: int
    role: Role
    start_bytes: int
    size_bytes: int
    type_guid: str
    name: str                       # GPT partition name
    filesystem: str | None = None   # None: left unformatted (BIOS boot)
    fs_label: str | None = None

    @property
    def end_bytes(self) -> int:
        """First byte after the partition."""
        return self.start_bytes + self.size_bytes

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number, "role": self.role.value, "start_bytes": self.start_bytes,
            "size_bytes": self.size_bytes, "type_guid": self.type_guid, "name": self.name,
            "filesystem": self.filesystem, "fs_label": self.fs_label,
        }


@dataclass(frozen=True)
class PartitionPlan:
    device_size: int
    sector_size: int
    partitions: tuple[PlannedPartition, ...]
    table: str = "gpt"

    def get(self, role: Role) -> PlannedPartition | None:
        return next((p for p in self.partitions if p.role is role), None)

    def part(self, role: Role) -> PlannedPartition:
        found = self.get(role)
        if found is None:
            raise KeyError(f"the plan has no {role.value} partition")
        return found

    def sectors(self, p: PlannedPartition) -> tuple[int, int]:
        """(first, last) sector of a partition, inclusive, as sgdisk prints them."""
        return p.start_bytes // self.sector_size, p.end_bytes // self.sector_size - 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": self.table, "device_size": self.device_size, "sector_size": self.sector_size,
            "alignment": ALIGNMENT, "partitions": [p.to_dict() for p in self.partitions],
        }

    def render(self) -> str:
        """A human table, printed by --dry-run."""
        head = (f"Partition table: {self.table.upper()} on {human_size(self.device_size)} "
                f"({self.device_size} bytes), {self.sector_size}-byte sectors, "
                f"{human_size(ALIGNMENT)} alignment")
        cols = ("#", "role", "start", "end", "size", "type", "name", "fs", "label")
        rows = [cols]
        for p in self.partitions:
            first, last = self.sectors(p)
            rows.append((
                str(p.number), p.role.value, str(first), str(last), human_size(p.size_bytes),
                f"{p.type_guid} ({TYPE_NAMES.get(p.type_guid, '?')})", p.name,
                p.filesystem or "-", p.fs_label or "-",
            ))
        widths = [max(len(r[i]) for r in rows) for i in range(len(cols))]
        right = {0, 2, 3, 4}  # numbers right-aligned
        lines = [head]
        for r in rows:
            cells = [c.rjust(w) if i in right else c.ljust(w)
                     for i, (c, w) in enumerate(zip(r, widths, strict=True))]
            lines.append("  ".join(cells).rstrip())
        last_end = self.partitions[-1].end_bytes if self.partitions else 0
        lines.append(f"Start and end are sectors; unallocated: "
                     f"{human_size(self.partitions[0].start_bytes if self.partitions else 0)} "
                     f"before, {human_size(self.device_size - last_end)} after")
        return "\n".join(lines) + "\n"


def _gpt_tail(sector_size: int) -> int:
    """Bytes GPT needs at the end of the disk (backup entries + backup header)."""
    return GPT_ENTRIES_BYTES + sector_size


def _fixed_sizes(*, bios: bool, uefi: bool) -> int:
    return (BIOS_BOOT_SIZE if bios else 0) + (ESP_SIZE if uefi else 0) + BOOT_SIZE


def plan_disk(
    disk_size: int,
    *,
    sector_size: int = 512,
    filesystem: str = "xfs",
    root_size: int | None = None,
    bootloader: str = "grub",
    bios: bool = True,
    uefi: bool = True,
    arch: str = "x86_64",
) -> PartitionPlan:
    """The GPT layout for a disk of `disk_size` bytes. Pure: no I/O, same input same plan."""
    if filesystem not in ROOT_FILESYSTEMS:
        raise UsageError(f"unknown root filesystem '{filesystem}'",
                         f"choose one of: {', '.join(ROOT_FILESYSTEMS)}")
    if bootloader not in BOOTLOADERS:
        raise UsageError(f"unknown bootloader '{bootloader}'",
                         f"choose one of: {', '.join(BOOTLOADERS)}")
    if not (bios or uefi):
        raise UsageError("neither BIOS nor UEFI requested: the disk could not boot")
    if bootloader == "systemd" and not uefi:
        raise UsageError("systemd-boot needs UEFI", "drop --bootloader systemd or enable UEFI")
    if arch not in ROOT_TYPES:
        raise UsageError(f"unsupported architecture '{arch}'",
                         f"supported: {', '.join(ROOT_TYPES)}")
    if sector_size < 512 or sector_size > ALIGNMENT or sector_size & (sector_size - 1):
        raise UsageError(f"unsupported sector size {sector_size}",
                         "expected a power of two such as 512 or 4096")

    usable_end = align_down(disk_size - _gpt_tail(sector_size), ALIGNMENT)
    parts: list[PlannedPartition] = []
    offset = ALIGNMENT  # the first MiB holds the protective MBR and the primary GPT

    def add(role: Role, size: int, type_guid: str, name: str,
            filesystem: str | None = None, label: str | None = None) -> None:
        nonlocal offset
        parts.append(PlannedPartition(len(parts) + 1, role, offset, size, str(type_guid), name,
                                      filesystem, label))
        offset += size

    if bios:
        add(Role.BIOS_BOOT, BIOS_BOOT_SIZE, PartType.BIOS_BOOT, "BIOS-BOOT")
    if uefi:
        add(Role.ESP, ESP_SIZE, PartType.ESP, "EFI-SYSTEM", "vfat", "EFI-SYSTEM")
    # systemd-boot reads BLS entries from an XBOOTLDR partition; GRUB finds /boot by UUID.
    boot_type = PartType.XBOOTLDR if bootloader == "systemd" else PartType.LINUX_FS
    add(Role.BOOT, BOOT_SIZE, boot_type, "boot", "ext4", "boot")

    available = usable_end - offset
    if available < MIN_ROOT_SIZE:
        need = ALIGNMENT + _fixed_sizes(bios=bios, uefi=uefi) + MIN_ROOT_SIZE + ALIGNMENT
        raise DiskError(
            f"disk too small: {human_size(disk_size)} ({disk_size} bytes), the partition layout "
            f"needs at least {human_size(need)}")
    if root_size is None:
        size = available
    else:
        size = align_up(root_size, ALIGNMENT)
        if size < MIN_ROOT_SIZE:
            raise UsageError(f"root size {human_size(root_size)} is too small",
                             f"give at least {human_size(MIN_ROOT_SIZE)}")
        if size > available:
            raise UsageError(
                f"root size {human_size(size)} does not fit: {human_size(available)} left "
                f"on a {human_size(disk_size)} disk",
                "give a smaller --root-size or leave it out to use the rest of the disk")
    add(Role.ROOT, size, ROOT_TYPES[arch], "root", filesystem, "root")
    return PartitionPlan(device_size=disk_size, sector_size=sector_size, partitions=tuple(parts))


def min_root_size(image_bytes: int) -> int:
    """Smallest root filesystem for an image of `image_bytes` unpacked.

    The bare ostree repo holds the image once (deployments are hard links into it); half as
    much again leaves room for an upgrade's changed layers, and 512 MiB covers the filesystem's
    own overhead (xfs log, btrfs metadata), /etc copies and a fresh /var.
    """
    return max(MIN_ROOT_SIZE, align_up(image_bytes * 3 // 2 + 512 * MiB, ALIGNMENT))


def min_disk_size(image_bytes: int, *, bios: bool = True, uefi: bool = True) -> int:
    """Smallest sane disk for an image of `image_bytes` unpacked (a multiple of 1 MiB)."""
    # One MiB before the first partition (MBR, primary GPT) and one after the last (backup GPT).
    return ALIGNMENT + _fixed_sizes(bios=bios, uefi=uefi) + min_root_size(image_bytes) + ALIGNMENT
