"""Apply a PartitionPlan to a device: wipe, write the GPT with pyparted, format.

Does nothing clever: every decision is in the plan. Call `checks.check_target` first.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import parted

from bootc_py.disk.devices import (
    fs_uuid,
    kernel_partitions,
    partition_path,
    probe,
    reread_partitions,
    size_and_sector,
    wait_for_partitions,
)
from bootc_py.disk.gpt import read_type_guids, set_type_guids
from bootc_py.disk.mkfs import make_filesystem
from bootc_py.disk.model import human_size
from bootc_py.disk.plan import PartitionPlan, PlannedPartition, Role
from bootc_py.errors import DiskError
from bootc_py.log import step
from bootc_py.run import DEVICE_TIMEOUT, run

__all__ = ["AppliedDisk", "AppliedPartition", "apply_plan", "fs_uuid", "partition_path",
           "write_table"]

log = logging.getLogger(__name__)

# pyparted's exceptions share no base class beyond Exception.
PARTED_ERRORS: tuple[type[Exception], ...] = tuple(
    getattr(parted, name) for name in (
        "PartedException", "DeviceException", "DiskException", "DiskLabelException",
        "IOException", "PartitionException", "ConstraintException", "GeometryException",
        "CreateException", "AlignmentException", "UnknownDeviceException",
    ) if hasattr(parted, name))


@dataclass(frozen=True)
class AppliedPartition:
    role: Role
    number: int
    path: Path                  # the partition's device node, e.g. /dev/loop0p4
    partuuid: str               # GPT unique partition GUID (lower case), for root=PARTUUID=
    filesystem: str | None
    fs_label: str | None
    fs_uuid: str | None         # None for the unformatted BIOS boot partition

    def to_dict(self) -> dict[str, Any]:
        return {"role": self.role.value, "number": self.number, "path": str(self.path),
                "partuuid": self.partuuid, "filesystem": self.filesystem,
                "fs_label": self.fs_label, "fs_uuid": self.fs_uuid}


@dataclass(frozen=True)
class AppliedDisk:
    device: Path
    plan: PartitionPlan
    partitions: tuple[AppliedPartition, ...]

    def get(self, role: Role) -> AppliedPartition | None:
        return next((p for p in self.partitions if p.role is role), None)

    def part(self, role: Role) -> AppliedPartition:
        found = self.get(role)
        if found is None:
            raise KeyError(f"{self.device} has no {role.value} partition")
        return found

    @property
    def root(self) -> AppliedPartition:
        return self.part(Role.ROOT)

    @property
    def boot(self) -> AppliedPartition:
        return self.part(Role.BOOT)

    @property
    def esp(self) -> AppliedPartition | None:
        return self.get(Role.ESP)

    @property
    def bios_boot(self) -> AppliedPartition | None:
        return self.get(Role.BIOS_BOOT)

    def to_dict(self) -> dict[str, Any]:
        return {"device": str(self.device), "partitions": [p.to_dict() for p in self.partitions]}


def apply_plan(device: Path, plan: PartitionPlan) -> AppliedDisk:
    """Erase `device`, write `plan`'s GPT, format every partition; return what was made."""
    device = Path(os.path.realpath(device))
    size, sector = size_and_sector(device)
    if sector != plan.sector_size:
        raise DiskError(f"{device} has {sector}-byte sectors, the plan was made for "
                        f"{plan.sector_size}-byte sectors")
    if size < plan.device_size:
        raise DiskError(f"{device} is {human_size(size)}, smaller than the "
                        f"{human_size(plan.device_size)} the plan was made for")

    with step("partition-table", f"Writing the GPT of {device}"):
        wipe(device)
        write_table(device, plan)
        reread_partitions(device)
        expected = {p.number: (p.start_bytes, p.size_bytes) for p in plan.partitions}
        nodes = wait_for_partitions(device, expected)

    applied = []
    with step("mkfs", f"Creating filesystems on {device}"):
        for p in plan.partitions:
            node = nodes[p.number]
            # Old signatures may sit at the new partition's offsets (an earlier layout).
            run(["wipefs", "-a", "-q", node], quiet=True, timeout=DEVICE_TIMEOUT)
            if p.filesystem:
                log.info("    %s: %s (%s)", node, p.filesystem, p.fs_label or "no label")
                make_filesystem(node, p.filesystem, p.fs_label)
            applied.append(_verify(node, p))
    return AppliedDisk(device=device, plan=plan, partitions=tuple(applied))


def wipe(device: Path) -> None:
    """Erase the signatures of every partition the kernel knows, then of the disk itself."""
    for number in sorted(kernel_partitions(device)):
        node = partition_path(device, number)
        if node.exists():
            run(["wipefs", "-a", "-q", node], quiet=True, timeout=DEVICE_TIMEOUT)
    run(["wipefs", "-a", "-q", device], quiet=True, timeout=DEVICE_TIMEOUT)


def write_table(device: Path, plan: PartitionPlan) -> None:
    """Write a fresh GPT exactly as planned: geometry and names through pyparted, type GUIDs
    patched into both GPT copies by gpt.py."""
    ss = plan.sector_size
    with _parted_device(device) as dev:
        if dev.sectorSize != ss:
            raise DiskError(f"libparted sees {dev.sectorSize}-byte sectors on {device}, "
                            f"the plan has {ss}")
        try:
            disk = parted.freshDisk(dev, plan.table)
            for p in plan.partitions:
                geom = parted.Geometry(device=dev, start=p.start_bytes // ss,
                                       length=p.size_bytes // ss)
                part = parted.Partition(disk=disk, type=parted.PARTITION_NORMAL, geometry=geom)
                disk.addPartition(part, constraint=parted.Constraint(exactGeom=geom))
                if part.number != p.number:
                    raise DiskError(f"libparted numbered partition {p.number} as {part.number}")
                part.set_name(p.name)
            # To the device only: telling the kernel is reread_partitions' job (commitToOS
            # uses BLKPG calls that fail on loop devices here).
            disk.commitToDevice()
        except PARTED_ERRORS as exc:
            raise DiskError(f"writing the partition table of {device} failed: {exc}") from exc
    # Type GUIDs are always patched in by gpt.py: libparted 3.5 cannot set arbitrary ones, and
    # Debian's pyparted 3.12 silently accepts (and ignores) a `type_uuid` attribute.
    set_type_guids(device, ss, {p.number: p.type_guid for p in plan.partitions})
    written = read_type_guids(device, ss)
    wanted = {p.number: p.type_guid for p in plan.partitions}
    if written != wanted:
        raise DiskError(f"{device}: the partition types written ({written}) differ from the "
                        f"plan ({wanted})")


@contextmanager
def _parted_device(device: Path) -> Iterator[Any]:
    try:
        dev = parted.getDevice(str(device))
    except PARTED_ERRORS as exc:
        raise DiskError(f"libparted cannot open {device}: {exc}") from exc
    try:
        yield dev
    finally:
        # libparted caches devices by path: a loop device reused for another file would keep
        # the old size. Forget it.
        dev.removeFromCache()


def _verify(node: Path, p: PlannedPartition) -> AppliedPartition:
    """Read back what was written (blkid -p, from the disk) and compare it with the plan."""
    info = probe(node)
    found = {
        "type GUID": (info.get("PART_ENTRY_TYPE", "").upper(), p.type_guid),
        "name": (info.get("PART_ENTRY_NAME", ""), p.name),
        "filesystem": (info.get("TYPE"), p.filesystem),
        "label": (info.get("LABEL"), p.fs_label),
    }
    for what, (got, want) in found.items():
        if got != want:
            raise DiskError(f"{node}: {what} is {got!r} after formatting, expected {want!r}")
    partuuid = info.get("PART_ENTRY_UUID")
    if not partuuid:
        raise DiskError(f"{node}: no partition UUID found after partitioning")
    return AppliedPartition(role=p.role, number=p.number, path=node, partuuid=partuuid.lower(),
                            filesystem=p.filesystem, fs_label=p.fs_label,
                            fs_uuid=info.get("UUID") if p.filesystem else None)
