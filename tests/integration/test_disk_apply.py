"""Partition plans applied to real loop devices, read back with sgdisk, blkid and lsblk; discovery
and refusals on real devices (mounted, swap, the running root). Every loop device, mount and
swap a test creates is gone afterwards, even when it fails."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from bootc_py.disk.apply import AppliedDisk, apply_plan, fs_uuid, partition_path
from bootc_py.disk.checks import check_device, check_target
from bootc_py.disk.discover import disk_info, parse_mountinfo
from bootc_py.disk.esp import Esp
from bootc_py.disk.loop import LoopDevice, create_sparse, loops_of
from bootc_py.disk.model import GiB, MiB, UseKind
from bootc_py.disk.mount import Mount, Mounts
from bootc_py.disk.plan import PartitionPlan, Role, min_disk_size, plan_disk
from bootc_py.errors import DiskError
from bootc_py.run import output, run
from testlib import require_root, require_tool

TOOLS = ("losetup", "partx", "sgdisk", "blkid", "wipefs", "lsblk", "mkfs.vfat", "mkfs.ext4",
         "mkfs.xfs", "mkfs.btrfs", "mmd", "mcopy", "mdir", "mdel", "mdeltree", "mkswap",
         "swapon", "swapoff", "mount", "umount")
SGDISK_CODES = {Role.BIOS_BOOT: "EF02", Role.ESP: "EF00", Role.ROOT: "8304"}


@pytest.fixture
def work(tmp_path: Path) -> Iterator[Path]:
    require_root()
    require_tool(*TOOLS)
    yield tmp_path  # the integration conftest fails the test if anything is left behind


def sgdisk_table(device: Path) -> list[tuple[int, int, int, str, str]]:
    """(number, first, last, code, name) rows of `sgdisk -p`."""
    rows = []
    for line in output(["sgdisk", "-p", device]).splitlines():
        m = re.match(r"^\s+(\d+)\s+(\d+)\s+(\d+)\s+\S+ \S+\s+([0-9A-F]{4})\s+(.*)$", line)
        if m:
            rows.append((int(m[1]), int(m[2]), int(m[3]), m[4], m[5].strip()))
    return rows


def verify_applied(device: Path, plan: PartitionPlan, applied: AppliedDisk) -> None:
    """The disk as written equals the plan: read back from the disk by independent tools."""
    assert "No problems found" in output(["sgdisk", "-v", device])
    rows = sgdisk_table(device)
    assert [r[0] for r in rows] == [p.number for p in plan.partitions]
    lsblk = json.loads(output(["lsblk", "--json", "-b", "-o", "NAME,START,SIZE", device]))
    children = {c["name"]: c for c in lsblk["blockdevices"][0]["children"]}
    for p, row, a in zip(plan.partitions, rows, applied.partitions, strict=True):
        first, last = plan.sectors(p)
        assert row[1:3] == (first, last)
        assert row[4] == p.name
        if p.role in SGDISK_CODES:
            assert row[3] == SGDISK_CODES[p.role]
        info = output(["sgdisk", "-i", str(p.number), device])
        assert f"Partition GUID code: {p.type_guid} " in info
        assert f"Partition unique GUID: {a.partuuid.upper()}" in info
        assert p.start_bytes % MiB == 0 and p.size_bytes % MiB == 0
        node = partition_path(device, p.number)
        assert a.path == node and a.role is p.role
        child = children[node.name]
        assert int(child["start"]) * 512 == p.start_bytes  # lsblk counts 512-byte units
        assert int(child["size"]) == p.size_bytes
        probe = dict(line.split("=", 1) for line in
                     output(["blkid", "-p", "-o", "export", node]).splitlines())
        assert probe.get("TYPE") == p.filesystem
        assert probe.get("LABEL") == p.fs_label
        assert probe["PART_ENTRY_TYPE"].upper() == p.type_guid
        assert probe["PART_ENTRY_NAME"] == p.name
        if p.filesystem:
            assert probe["UUID"] == a.fs_uuid == fs_uuid(node)
        else:
            assert a.fs_uuid is None


def test_apply_default_plan(work: Path) -> None:
    disk = create_sparse(work / "disk.raw", 4 * GiB)
    with LoopDevice(disk) as loop:
        info = check_device(loop.path, wipe=False, min_size=min_disk_size(430_000_000))
        assert info.is_empty and info.is_loop and info.backing_file == str(disk)
        plan = plan_disk(info.size_bytes, sector_size=info.logical_sector_size)
        applied = apply_plan(loop.path, plan)
        verify_applied(loop.path, plan, applied)
        assert [(r[0], r[3]) for r in sgdisk_table(loop.path)] == [
            (1, "EF02"), (2, "EF00"), (3, "8300"), (4, "8304")]

        # Discovery reads back the same thing, and now wants --wipe.
        found = disk_info(loop.path)
        assert [(p.number, p.fstype, p.label, p.partuuid, p.parttype, p.name, p.uuid)
                for p in found.partitions] == [
            (a.number, a.filesystem, a.fs_label, a.partuuid,
             plan.part(a.role).type_guid, plan.part(a.role).name, a.fs_uuid)
            for a in applied.partitions]
        assert found.pttype == "gpt" and not found.mounts and not found.in_use
        with pytest.raises(DiskError, match=r"is not empty: it has a gpt partition table with "
                           r"4 partitions \(vfat, ext4, xfs\); use --wipe to erase it"):
            check_target(found, wipe=False, min_size=GiB)

        # The filesystems are usable: root, /boot inside it, and the ESP through mtools.
        with Mounts() as mounts:
            root = mounts.mount(applied.root.path, work / "sysroot")
            boot = mounts.mount(applied.boot.path, root / "boot")
            (boot / "loader").mkdir()
            (root / "ostree").mkdir()
            assert os.statvfs(root).f_blocks * os.statvfs(root).f_frsize > 2 * GiB
        esp = Esp(applied.esp.path)  # type: ignore[union-attr]
        esp.write_text("/EFI/BOOT/grub.cfg", "configfile $prefix/grub.cfg\n")
        assert esp.read_text("/EFI/BOOT/grub.cfg") == "configfile $prefix/grub.cfg\n"
    assert loops_of(disk) == []


@pytest.mark.parametrize("filesystem", ["ext4", "btrfs"])
def test_apply_other_root_filesystems(work: Path, filesystem: str) -> None:
    disk = create_sparse(work / "disk.raw", 4 * GiB)
    with LoopDevice(disk) as loop:
        plan = plan_disk(4 * GiB, filesystem=filesystem, root_size=2 * GiB)
        applied = apply_plan(loop.path, plan)
        verify_applied(loop.path, plan, applied)
        assert applied.root.filesystem == filesystem
        assert plan.part(Role.ROOT).size_bytes == 2 * GiB
        with Mount(applied.root.path, work / "root") as m:
            (m.target / "ok").write_text("written\n")
            fstype = next(x.fstype for x in parse_mountinfo(
                Path("/proc/self/mountinfo").read_text()) if x.mountpoint == str(m.target))
            assert fstype == filesystem


def test_apply_4kn_systemd_boot(work: Path) -> None:
    disk = create_sparse(work / "disk.raw", 4 * GiB)
    with LoopDevice(disk, sector_size=4096) as loop:
        info = disk_info(loop.path)
        assert info.logical_sector_size == 4096
        plan = plan_disk(info.size_bytes, sector_size=4096, bootloader="systemd", bios=False)
        applied = apply_plan(loop.path, plan)
        verify_applied(loop.path, plan, applied)
        assert [(r[1], r[3]) for r in sgdisk_table(loop.path)] == [
            (256, "EF00"), (131328, "EA00"), (393472, "8304")]
        assert applied.bios_boot is None
        esp = Esp(applied.esp.path)  # type: ignore[union-attr]
        esp.write_bytes("/EFI/systemd/systemd-bootx64.efi", os.urandom(100_000))
        assert len(esp.read("/EFI/systemd/systemd-bootx64.efi")) == 100_000


def test_reapply_over_an_old_layout(work: Path) -> None:
    disk = create_sparse(work / "disk.raw", 4 * GiB)
    # An older, different layout: six partitions, an ext4 where the new BIOS boot partition
    # and ESP will be, and a filesystem signature inside the future root.
    run(["sgdisk", "-n", "1:0:+3M", "-n", "2:0:+100M", "-n", "3:0:+100M", "-n", "4:0:+1G",
         "-n", "5:0:+1G", "-n", "6:0:0", disk], quiet=True)
    with LoopDevice(disk) as loop:
        assert sorted(p.number for p in disk_info(loop.path).partitions) == [1, 2, 3, 4, 5, 6]
        run(["mkfs.ext4", "-q", "-F", loop.partition(1)])
        run(["mkfs.xfs", "-q", "-f", "-L", "old", loop.partition(5)])
        with pytest.raises(DiskError, match=r"6 partitions .* use --wipe to erase it"):
            check_device(loop.path, wipe=False, min_size=GiB)
        info = check_device(loop.path, wipe=True, min_size=GiB)
        plan = plan_disk(info.size_bytes)
        applied = apply_plan(loop.path, plan)
        verify_applied(loop.path, plan, applied)
        assert not partition_path(loop.path, 5).exists()
        assert not partition_path(loop.path, 6).exists()
        found = disk_info(loop.path)
        assert [p.fstype for p in found.partitions] == [None, "vfat", "ext4", "xfs"]
        assert found.partitions[3].label == "root"


def test_apply_refuses_a_plan_for_another_disk(work: Path) -> None:
    disk = create_sparse(work / "disk.raw", 4 * GiB)
    with LoopDevice(disk) as loop:
        with pytest.raises(DiskError, match=r"is 4 GiB, smaller than the 8 GiB the plan"):
            apply_plan(loop.path, plan_disk(8 * GiB))
        with pytest.raises(DiskError, match="512-byte sectors, the plan was made for 4096"):
            apply_plan(loop.path, plan_disk(4 * GiB, sector_size=4096))
        assert disk_info(loop.path).is_empty  # nothing was written


def test_whole_disk_filesystem_needs_wipe(work: Path) -> None:
    disk = create_sparse(work / "disk.raw", 4 * GiB)
    with LoopDevice(disk) as loop:
        run(["mkfs.ext4", "-q", "-F", "-L", "data", loop.path])
        info = disk_info(loop.path)
        assert "ext4" in info.signatures and not info.partitions
        with pytest.raises(DiskError, match=r"it has a signature \(ext4\); use --wipe"):
            check_target(info, wipe=False, min_size=GiB)
        check_target(info, wipe=True, min_size=GiB)
        apply_plan(loop.path, plan_disk(info.size_bytes))
        assert "ext4" not in disk_info(loop.path).signatures


@pytest.fixture
def installed(work: Path) -> Iterator[tuple[LoopDevice, AppliedDisk]]:
    disk = create_sparse(work / "disk.raw", 4 * GiB)
    with LoopDevice(disk) as loop:
        yield loop, apply_plan(loop.path, plan_disk(4 * GiB))


def test_mounted_partition_is_refused(work: Path,
                                      installed: tuple[LoopDevice, AppliedDisk]) -> None:
    loop, applied = installed
    target = work / "mnt"
    with Mount(applied.root.path, target):
        info = disk_info(loop.path)
        assert info.mounted_paths == (str(target),)
        for wipe in (False, True):
            with pytest.raises(DiskError) as err:
                check_target(info, wipe=wipe, min_size=GiB)
            assert err.value.message == (f"{loop.path}: {applied.root.path} is mounted at "
                                         f"{target}")
            assert err.value.hint == f"unmount it first: umount {target}"
    check_device(loop.path, wipe=True, min_size=GiB)


def test_active_swap_partition_is_refused(installed: tuple[LoopDevice, AppliedDisk]) -> None:
    loop, applied = installed
    part = applied.boot.path
    run(["mkswap", "-q", part])
    run(["swapon", part])
    try:
        info = disk_info(loop.path)
        assert [(u.kind, u.device) for u in info.in_use] == [(UseKind.SWAP, str(part))]
        with pytest.raises(DiskError) as err:
            check_target(info, wipe=True, min_size=GiB)
        assert err.value.message == f"{loop.path}: {part} is in use as active swap"
        assert err.value.hint == f"turn it off first: swapoff {part}"
    finally:
        run(["swapoff", part])
    check_device(loop.path, wipe=True, min_size=GiB)


def test_swap_file_on_the_disk_is_found(work: Path,
                                        installed: tuple[LoopDevice, AppliedDisk]) -> None:
    loop, applied = installed
    with Mount(applied.root.path, work / "mnt") as m:
        swapfile = m.target / "swapfile"
        with open(swapfile, "wb") as f:  # swap files must not be sparse
            f.write(b"\0" * (16 * MiB))
        swapfile.chmod(0o600)
        run(["mkswap", "-q", swapfile])
        run(["swapon", swapfile])
        try:
            info = disk_info(loop.path)
            assert (UseKind.SWAP, str(applied.root.path), f"swap file {swapfile}") in [
                (u.kind, u.device, u.detail) for u in info.in_use]
            with pytest.raises(DiskError, match="is mounted at"):
                check_target(info, wipe=True, min_size=GiB)
        finally:
            run(["swapoff", swapfile])


def test_partition_missing_and_regular_file(work: Path,
                                            installed: tuple[LoopDevice, AppliedDisk]) -> None:
    loop, applied = installed
    part = disk_info(applied.esp.path)  # type: ignore[union-attr]
    assert part.is_partition and part.parent == loop.path
    with pytest.raises(DiskError, match=r"is a partition, not a whole disk"):
        check_target(part, wipe=True, min_size=GiB)
    with pytest.raises(DiskError) as err:
        disk_info(work / "nope")
    assert err.value.message == f"{work}/nope does not exist"
    with pytest.raises(DiskError) as err:
        disk_info(work / "disk.raw")
    assert err.value.message == f"{work}/disk.raw is not a block device"
    assert err.value.hint is not None and "--via-loopback" in err.value.hint


def test_running_root_is_refused(pytestconfig: pytest.Config) -> None:
    require_tool("blkid", "wipefs")
    roots = []
    for pid in ("self", "1"):
        for m in parse_mountinfo(Path(f"/proc/{pid}/mountinfo").read_text()):
            sysdir = Path(f"/sys/dev/block/{m.majmin[0]}:{m.majmin[1]}")
            if m.mountpoint == "/" and sysdir.exists():
                roots.append(sysdir.resolve())
    disks = [Path("/dev") / (d.parent.name if (d / "partition").exists() else d.name)
             for d in roots]
    for dev in disks:
        info = disk_info(dev)
        assert info.holds_root
        with pytest.raises(DiskError, match="holds the running system's root filesystem"):
            check_target(info, wipe=True, min_size=0)
    # No other disk claims to hold the root (loop devices are left alone: other tests' own).
    for name in os.listdir("/sys/block"):
        dev = Path("/dev") / name
        size = int(Path(f"/sys/block/{name}/size").read_text())
        if dev not in disks and not name.startswith("loop") and dev.exists() and size > 0:
            assert not disk_info(dev).holds_root, dev
