"""Custom disk layouts: a LayoutRequest (partitions, LVM, btrfs subvolumes) -> a LayoutPlan.

A kickstart's `part`/`volgroup`/`logvol`/`btrfs`/`autopart` become a LayoutRequest; planning it
against a disk's size is pure (same input, same plan) and yields the same PartitionPlan the
default layout uses, plus the volume groups, logical volumes, btrfs subvolumes and the mounts
(what goes in the deployment's fstab). Sizes follow Anaconda: a minimum, optionally growing
into the free space (shared evenly, each up to its --maxsize).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bootc_py.disk.model import MiB, align_down, align_up, human_size
from bootc_py.disk.plan import (
    ALIGNMENT,
    GPT_ENTRIES_BYTES,
    ROOT_TYPES,
    PartitionPlan,
    PartType,
    PlannedPartition,
    Role,
)
from bootc_py.errors import DiskError, UsageError

FILESYSTEMS = ("xfs", "ext4", "btrfs", "vfat", "swap")
PE_SIZE = 4 * MiB          # LVM's default physical extent
PV_METADATA = MiB          # pvcreate's default data alignment: the first MiB is metadata
MIN_ROOT = 512 * MiB

# GPT types by what a partition holds (the Discoverable Partitions Specification's where any).
VAR_TYPE = "4D21B016-B534-45C2-A9FB-5C16E091FD2D"
SWAP_TYPE = "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F"
LVM_TYPE = "E6D6D379-F507-44C2-A23C-238F2A3DF928"


@dataclass(frozen=True)
class PartRequest:
    """One partition. `kind`: biosboot, esp, boot, fs (mounted at `mountpoint`), swap, pv
    (an LVM physical volume named `ref`), btrfs (a btrfs member named `ref`)."""

    kind: str
    size: int                       # bytes, the minimum
    grow: bool = False
    max_size: int | None = None
    mountpoint: str | None = None
    fstype: str | None = None
    label: str | None = None
    options: str | None = None      # fstab options
    ref: str | None = None          # "pv.01", "btrfs.1"


@dataclass(frozen=True)
class VolumeGroupRequest:
    name: str
    pvs: tuple[str, ...]            # PartRequest refs
    pe_size: int = PE_SIZE


@dataclass(frozen=True)
class LogicalVolumeRequest:
    vg: str
    name: str
    size: int
    mountpoint: str                 # or "swap"
    fstype: str
    grow: bool = False
    max_size: int | None = None
    percent: int | None = None      # of the VG, instead of size
    label: str | None = None
    options: str | None = None


@dataclass(frozen=True)
class BtrfsVolumeRequest:
    name: str                       # its label, which subvolumes name it by
    members: tuple[str, ...]        # PartRequest refs
    mountpoint: str | None = None   # the top level mounted somewhere (rare)
    data_level: str | None = None
    metadata_level: str | None = None


@dataclass(frozen=True)
class SubvolumeRequest:
    volume: str
    name: str
    mountpoint: str


@dataclass(frozen=True)
class LayoutRequest:
    parts: tuple[PartRequest, ...]
    volume_groups: tuple[VolumeGroupRequest, ...] = ()
    logical_volumes: tuple[LogicalVolumeRequest, ...] = ()
    btrfs_volumes: tuple[BtrfsVolumeRequest, ...] = ()
    subvolumes: tuple[SubvolumeRequest, ...] = ()

    def root_kind(self) -> str:
        """Where / lives: "part", "lvm" or "btrfs"."""
        if any(lv.mountpoint == "/" for lv in self.logical_volumes):
            return "lvm"
        if any(s.mountpoint == "/" for s in self.subvolumes) or any(
                v.mountpoint == "/" for v in self.btrfs_volumes):
            return "btrfs"
        return "part"

    def to_dict(self) -> dict[str, Any]:
        def d(obj: Any) -> dict[str, Any]:
            return {k: v for k, v in vars(obj).items() if v not in (None, (), False)}
        return {"parts": [d(p) for p in self.parts],
                "volume_groups": [d(v) for v in self.volume_groups],
                "logical_volumes": [d(lv) for lv in self.logical_volumes],
                "btrfs_volumes": [d(b) for b in self.btrfs_volumes],
                "subvolumes": [d(s) for s in self.subvolumes]}


@dataclass(frozen=True)
class PlannedLV:
    vg: str
    name: str
    size_bytes: int
    fstype: str
    label: str | None

    @property
    def device(self) -> str:
        return f"/dev/{self.vg}/{self.name}"


@dataclass(frozen=True)
class PlannedVG:
    name: str
    pvs: tuple[int, ...]            # partition numbers
    pe_size: int
    size_bytes: int                 # usable extents


@dataclass(frozen=True)
class PlannedBtrfs:
    label: str
    members: tuple[int, ...]        # partition numbers
    subvolumes: tuple[str, ...]
    data_level: str | None = None
    metadata_level: str | None = None


@dataclass(frozen=True)
class MountSpec:
    """One mount of the installed system. `source`: part:N, lv:VG/NAME or btrfs:LABEL."""

    mountpoint: str                 # "/", "/boot", "/var/log", "swap"
    source: str
    fstype: str
    options: str = "defaults"
    subvol: str | None = None


@dataclass(frozen=True)
class LayoutPlan:
    partitions: PartitionPlan
    volume_groups: tuple[PlannedVG, ...] = ()
    logical_volumes: tuple[PlannedLV, ...] = ()
    btrfs: tuple[PlannedBtrfs, ...] = ()
    mounts: tuple[MountSpec, ...] = ()

    @property
    def root(self) -> MountSpec:
        return next(m for m in self.mounts if m.mountpoint == "/")

    def mount(self, mountpoint: str) -> MountSpec | None:
        return next((m for m in self.mounts if m.mountpoint == mountpoint), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "partitions": self.partitions.to_dict(),
            "volume_groups": [{"name": v.name, "pvs": list(v.pvs), "pe_size": v.pe_size,
                               "size_bytes": v.size_bytes} for v in self.volume_groups],
            "logical_volumes": [{"vg": lv.vg, "name": lv.name, "size_bytes": lv.size_bytes,
                                 "fstype": lv.fstype, "label": lv.label}
                                for lv in self.logical_volumes],
            "btrfs": [{"label": b.label, "members": list(b.members),
                       "subvolumes": list(b.subvolumes), "data_level": b.data_level,
                       "metadata_level": b.metadata_level} for b in self.btrfs],
            "mounts": [{"mountpoint": m.mountpoint, "source": m.source, "fstype": m.fstype,
                        "options": m.options, "subvol": m.subvol} for m in self.mounts],
        }

    def render(self) -> str:
        text = self.partitions.render()
        for vg in self.volume_groups:
            text += (f"Volume group {vg.name}: {human_size(vg.size_bytes)} on partition(s) "
                     f"{', '.join(str(n) for n in vg.pvs)}, {human_size(vg.pe_size)} extents\n")
            for lv in (x for x in self.logical_volumes if x.vg == vg.name):
                text += f"  {lv.device}  {human_size(lv.size_bytes)}  {lv.fstype}\n"
        for b in self.btrfs:
            text += (f"btrfs {b.label} on partition(s) {', '.join(str(n) for n in b.members)}: "
                     f"subvolumes {', '.join(b.subvolumes) or '-'}\n")
        text += "Mounts:\n"
        for m in self.mounts:
            sub = f" (subvol={m.subvol})" if m.subvol else ""
            text += f"  {m.mountpoint:<12} {m.source}{sub}  {m.fstype}  {m.options}\n"
        return text


def _grow(sizes: list[int], grow: list[bool], maxes: list[int | None], free: int,
          align: int) -> list[int]:
    """Share `free` bytes evenly among the growing entries, each up to its maximum."""
    sizes = list(sizes)
    while free >= align:
        open_ = [i for i, g in enumerate(grow)
                 if g and (maxes[i] is None or sizes[i] < (maxes[i] or 0))]
        if not open_:
            break
        share = align_down(free // len(open_), align) or align
        for i in open_:
            cap = maxes[i]
            add = min(share, free, (cap - sizes[i]) if cap is not None else share)
            add = align_down(add, align)
            sizes[i] += add
            free -= add
            if free < align:
                break
    return sizes


_ROLE = {"biosboot": Role.BIOS_BOOT, "esp": Role.ESP, "boot": Role.BOOT}


def _type_and_role(p: PartRequest, arch: str) -> tuple[str, Role]:
    if p.kind in _ROLE:
        role = _ROLE[p.kind]
        guid = {Role.BIOS_BOOT: PartType.BIOS_BOOT, Role.ESP: PartType.ESP,
                Role.BOOT: PartType.LINUX_FS}[role]
        return str(guid), role
    if p.kind == "swap":
        return SWAP_TYPE, Role.SWAP
    if p.kind == "pv":
        return LVM_TYPE, Role.LVM_PV
    if p.kind == "btrfs":
        return str(PartType.LINUX_FS), Role.BTRFS
    if p.mountpoint == "/":
        return str(ROOT_TYPES[arch]), Role.ROOT
    if p.mountpoint == "/var":
        return VAR_TYPE, Role.DATA
    return str(PartType.LINUX_FS), Role.DATA


def _name(p: PartRequest) -> str:
    if p.kind == "biosboot":
        return "BIOS-BOOT"
    if p.kind == "esp":
        return "EFI-SYSTEM"
    if p.ref:
        return p.ref
    if p.mountpoint == "/":
        return "root"
    return (p.mountpoint or p.kind).strip("/").replace("/", "-") or p.kind


def plan_layout(request: LayoutRequest, disk_size: int, *, sector_size: int = 512,
                arch: str = "x86_64") -> LayoutPlan:
    """Place `request` on a disk of `disk_size` bytes. Pure."""
    if arch not in ROOT_TYPES:
        raise UsageError(f"unsupported architecture '{arch}'")
    usable_end = align_down(disk_size - GPT_ENTRIES_BYTES - sector_size, ALIGNMENT)
    sizes = [align_up(max(p.size, MiB), ALIGNMENT) for p in request.parts]
    free = usable_end - ALIGNMENT - sum(sizes)
    if free < 0:
        raise DiskError(f"the kickstart's partitions need {human_size(sum(sizes) + 2 * MiB)}, "
                        f"the disk has {human_size(disk_size)}",
                        "give a bigger disk (--disk-size) or smaller --size values")
    sizes = _grow(sizes, [p.grow for p in request.parts],
                  [align_down(m, ALIGNMENT) if m else None for p in request.parts
                   for m in (p.max_size,)], free, ALIGNMENT)
    parts: list[PlannedPartition] = []
    offset = ALIGNMENT
    by_ref: dict[str, int] = {}
    mounts: list[MountSpec] = []
    for i, (p, size) in enumerate(zip(request.parts, sizes, strict=True), start=1):
        guid, role = _type_and_role(p, arch)
        fs = p.fstype if p.kind not in ("biosboot", "pv", "btrfs") else None
        label = p.label or ({"esp": "EFI-SYSTEM", "boot": "boot"}.get(p.kind)
                            or ("root" if p.mountpoint == "/" else None))
        if fs == "swap":
            label = p.label
        parts.append(PlannedPartition(i, role, offset, size, guid, _name(p), fs,
                                      label if fs else None))
        offset += size
        if p.ref:
            by_ref[p.ref] = i
        if p.mountpoint and fs:
            mounts.append(MountSpec(p.mountpoint, f"part:{i}", fs, p.options or "defaults"))
        elif p.kind == "swap":
            mounts.append(MountSpec("swap", f"part:{i}", "swap", p.options or "defaults"))
    table = PartitionPlan(device_size=disk_size, sector_size=sector_size,
                          partitions=tuple(parts))

    vgs: list[PlannedVG] = []
    lvs: list[PlannedLV] = []
    for vg in request.volume_groups:
        numbers = tuple(by_ref[r] for r in vg.pvs)
        vg_size = sum(align_down(parts[n - 1].size_bytes - PV_METADATA, vg.pe_size)
                      for n in numbers)
        vgs.append(PlannedVG(vg.name, numbers, vg.pe_size, vg_size))
        mine = [lv for lv in request.logical_volumes if lv.vg == vg.name]
        want = [align_up(vg_size * lv.percent // 100 if lv.percent else lv.size, vg.pe_size)
                for lv in mine]
        if sum(want) > vg_size:
            raise DiskError(f"the logical volumes of {vg.name} need {human_size(sum(want))}, "
                            f"the volume group has {human_size(vg_size)}",
                            "give smaller logvol --size values or bigger physical volumes")
        got = _grow(want, [lv.grow for lv in mine], [lv.max_size for lv in mine],
                    vg_size - sum(want), vg.pe_size)
        for lv, size in zip(mine, got, strict=True):
            lvs.append(PlannedLV(vg.name, lv.name, size, lv.fstype,
                                 lv.label or ("root" if lv.mountpoint == "/" else None)))
            point = "swap" if lv.fstype == "swap" else lv.mountpoint
            mounts.append(MountSpec(point, f"lv:{vg.name}/{lv.name}", lv.fstype,
                                    lv.options or "defaults"))

    vols: list[PlannedBtrfs] = []
    for vol in request.btrfs_volumes:
        subs = tuple(s for s in request.subvolumes if s.volume == vol.name)
        vols.append(PlannedBtrfs(vol.name, tuple(by_ref[r] for r in vol.members),
                                 tuple(s.name for s in subs), vol.data_level,
                                 vol.metadata_level))
        if vol.mountpoint:
            mounts.append(MountSpec(vol.mountpoint, f"btrfs:{vol.name}", "btrfs"))
        for s in subs:
            mounts.append(MountSpec(s.mountpoint, f"btrfs:{vol.name}", "btrfs",
                                    f"subvol={s.name}", subvol=s.name))

    plan = LayoutPlan(table, tuple(vgs), tuple(lvs), tuple(vols),
                      tuple(sorted(mounts, key=_mount_order)))
    root_size = _root_size(plan)
    if root_size is not None and root_size < MIN_ROOT:
        raise DiskError(f"the root filesystem would be {human_size(root_size)}",
                        f"give / at least {human_size(MIN_ROOT)}")
    return plan


def _mount_order(m: MountSpec) -> tuple[int, str]:
    """Parents before children (/ then /boot then /boot/efi); swap last."""
    if m.mountpoint == "swap":
        return (1 << 16, "")
    return (m.mountpoint.rstrip("/").count("/"), m.mountpoint)


def _root_size(plan: LayoutPlan) -> int | None:
    root = plan.root
    kind, _, ref = root.source.partition(":")
    if kind == "part":
        return plan.partitions.partitions[int(ref) - 1].size_bytes
    if kind == "lv":
        return next(lv.size_bytes for lv in plan.logical_volumes
                    if f"{lv.vg}/{lv.name}" == ref)
    vol = next(b for b in plan.btrfs if b.label == ref)
    return sum(plan.partitions.partitions[n - 1].size_bytes for n in vol.members)
