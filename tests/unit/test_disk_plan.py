"""The partition plan: pure planning on recorded disk snapshots, golden renderings, invariants.

Regenerate the golden files after an intended change with BOOTC_PY_UPDATE_GOLDEN=1.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from bootc_py.disk.model import DiskInfo, GiB, MiB
from bootc_py.disk.plan import (
    ALIGNMENT,
    GPT_ENTRIES_BYTES,
    MIN_ROOT_SIZE,
    PartitionPlan,
    PartType,
    Role,
    min_disk_size,
    min_root_size,
    plan_disk,
)
from bootc_py.errors import DiskError, UsageError
from testlib import check_golden as golden

DATA = Path(__file__).parent / "data" / "disks"
GOLDEN = DATA / "golden"
SNAPSHOTS = sorted(p.stem for p in DATA.glob("*.json"))
WHOLE_DISKS = [s for s in SNAPSHOTS if not DiskInfo.from_json((DATA / f"{s}.json").read_text())
               .is_partition]


def snapshot(name: str) -> DiskInfo:
    return DiskInfo.from_json((DATA / f"{name}.json").read_text())


def plan_for(name: str, **kwargs: object) -> PartitionPlan:
    disk = snapshot(name)
    kwargs.setdefault("sector_size", disk.logical_sector_size)
    return plan_disk(disk.size_bytes, **kwargs)  # type: ignore[arg-type]


def check_golden(name: str, text: str) -> None:
    golden(GOLDEN / name, text)


GOLDEN_CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "loop-4g-empty.default": ("loop-4g-empty", {}),
    "disk-20g-empty.ext4-root8g": ("disk-20g-empty", {"filesystem": "ext4", "root_size": 8 * GiB}),
    "loop-8g-4kn-empty.btrfs": ("loop-8g-4kn-empty", {"filesystem": "btrfs"}),
    "nvme0n1-1tb-empty.systemd-uefi": ("nvme0n1-1tb-empty",
                                       {"bootloader": "systemd", "bios": False}),
    "loop-4g-installed.bios-only": ("loop-4g-installed", {"uefi": False}),
}


@pytest.mark.parametrize("case", sorted(GOLDEN_CASES))
def test_golden_render(case: str) -> None:
    name, kwargs = GOLDEN_CASES[case]
    plan = plan_for(name, **kwargs)
    check_golden(f"{case}.txt", plan.render())
    check_golden(f"{case}.json", json.dumps(plan.to_dict(), indent=2) + "\n")


@pytest.mark.parametrize("name", WHOLE_DISKS)
@pytest.mark.parametrize("filesystem", ["xfs", "ext4", "btrfs"])
def test_plan_invariants_on_every_snapshot(name: str, filesystem: str) -> None:
    disk = snapshot(name)
    if disk.size_bytes < min_disk_size(0):
        with pytest.raises(DiskError):
            plan_for(name, filesystem=filesystem)
        return
    plan = plan_for(name, filesystem=filesystem)
    assert plan.device_size == disk.size_bytes
    assert plan.sector_size == disk.logical_sector_size
    parts = plan.partitions
    assert [p.number for p in parts] == [1, 2, 3, 4]
    assert [p.role for p in parts] == [Role.BIOS_BOOT, Role.ESP, Role.BOOT, Role.ROOT]
    assert parts[0].start_bytes == MiB
    for a, b in itertools.pairwise(parts):
        assert a.end_bytes == b.start_bytes  # contiguous, no overlap
    for p in parts:
        assert p.start_bytes % ALIGNMENT == 0 and p.size_bytes % ALIGNMENT == 0
        first, last = plan.sectors(p)
        assert (last + 1 - first) * plan.sector_size == p.size_bytes
    # The backup GPT fits after the root partition.
    assert parts[-1].end_bytes <= disk.size_bytes - GPT_ENTRIES_BYTES - disk.logical_sector_size
    assert disk.size_bytes - parts[-1].end_bytes < ALIGNMENT + GPT_ENTRIES_BYTES + 4096
    root = plan.part(Role.ROOT)
    assert root.filesystem == filesystem and root.fs_label == "root"
    assert root.type_guid == PartType.ROOT_X86_64


def test_default_layout_4g() -> None:
    plan = plan_for("loop-4g-empty")
    got = [(p.role, p.start_bytes // MiB, p.size_bytes // MiB, p.type_guid, p.name, p.filesystem,
            p.fs_label) for p in plan.partitions]
    assert got == [
        (Role.BIOS_BOOT, 1, 1, "21686148-6449-6E6F-744E-656564454649", "BIOS-BOOT", None, None),
        (Role.ESP, 2, 512, "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", "EFI-SYSTEM", "vfat",
         "EFI-SYSTEM"),
        (Role.BOOT, 514, 1024, "0FC63DAF-8483-4772-8E79-3D69D8477DE4", "boot", "ext4", "boot"),
        (Role.ROOT, 1538, 4096 - 1538 - 1, "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709", "root", "xfs",
         "root"),
    ]


def test_4kn_sectors_are_counted_in_4096_bytes() -> None:
    plan = plan_for("loop-8g-4kn-empty")
    assert plan.sector_size == 4096
    assert plan.sectors(plan.part(Role.BIOS_BOOT)) == (256, 511)
    _, last = plan.sectors(plan.part(Role.ROOT))
    assert (last + 1) * 4096 == 8 * GiB - MiB


def test_systemd_boot_gets_an_xbootldr_partition() -> None:
    plan = plan_for("disk-20g-empty", bootloader="systemd", bios=False)
    assert [p.role for p in plan.partitions] == [Role.ESP, Role.BOOT, Role.ROOT]
    assert plan.part(Role.BOOT).type_guid == "BC13C2FF-59E6-4262-A352-B275FD6F7172"
    assert plan.get(Role.BIOS_BOOT) is None
    assert plan.part(Role.ESP).start_bytes == MiB


def test_grub_boot_is_a_plain_linux_partition() -> None:
    for bootloader in ("grub", "none"):
        plan = plan_for("disk-20g-empty", bootloader=bootloader)
        assert plan.part(Role.BOOT).type_guid == PartType.LINUX_FS


def test_root_size_leaves_the_rest_free() -> None:
    plan = plan_for("disk-20g-empty", root_size=8 * GiB)
    assert plan.part(Role.ROOT).size_bytes == 8 * GiB
    # Not a MiB multiple: rounded up to the alignment.
    plan = plan_for("disk-20g-empty", root_size=8 * GiB + 1)
    assert plan.part(Role.ROOT).size_bytes == 8 * GiB + MiB


def test_plan_is_pure_and_deterministic() -> None:
    assert plan_for("loop-4g-empty") == plan_for("loop-4g-empty")
    with pytest.raises(AttributeError):
        plan_for("loop-4g-empty").sector_size = 4096  # type: ignore[misc]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"filesystem": "zfs"}, "unknown root filesystem 'zfs'"),
    ({"bootloader": "lilo"}, "unknown bootloader 'lilo'"),
    ({"bios": False, "uefi": False}, "neither BIOS nor UEFI requested: the disk could not boot"),
    ({"bootloader": "systemd", "uefi": False}, "systemd-boot needs UEFI"),
    ({"sector_size": 1000}, "unsupported sector size 1000"),
    ({"arch": "sparc"}, "unsupported architecture 'sparc'"),
    ({"root_size": 100 * MiB}, "root size 100 MiB is too small"),
    ({"root_size": 3 * GiB}, "root size 3 GiB does not fit: 2557 MiB left on a 4 GiB disk"),
])
def test_bad_requests_are_usage_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError) as err:
        plan_for("loop-4g-empty", **kwargs)
    assert err.value.message == message


def test_too_small_disk() -> None:
    with pytest.raises(DiskError) as err:
        plan_for("loop-1g-small")
    assert not isinstance(err.value, UsageError)
    assert err.value.message == ("disk too small: 1 GiB (1073741824 bytes), the partition layout "
                                 "needs at least 2051 MiB")


@pytest.mark.parametrize("image_bytes", [0, 1, 430_000_000, 5 * GiB + 12345])
@pytest.mark.parametrize(("bios", "uefi"), [(True, True), (False, True), (True, False)])
def test_min_disk_size_always_plans(image_bytes: int, bios: bool, uefi: bool) -> None:
    size = min_disk_size(image_bytes, bios=bios, uefi=uefi)
    assert size % MiB == 0
    plan = plan_disk(size, bios=bios, uefi=uefi)
    root = plan.part(Role.ROOT)
    assert root.size_bytes >= min_root_size(image_bytes) >= MIN_ROOT_SIZE
    assert root.size_bytes >= image_bytes * 3 // 2


def test_min_disk_size_of_the_sample_image() -> None:
    # FACTS.md: the sample Debian image unpacks to about 429 MB.
    assert min_disk_size(429_000_000) == 2665 * MiB  # 1126 MiB root
