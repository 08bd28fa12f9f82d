"""LoopDevice, Mount, Mounts and Esp on real devices: attached, used, and cleaned up even when the
body raises or something still holds them for a moment."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from bootc_py.disk import mount as mount_mod
from bootc_py.disk.apply import write_table
from bootc_py.disk.esp import Esp
from bootc_py.disk.loop import LoopDevice, create_sparse, loops_of
from bootc_py.disk.model import GiB, MiB
from bootc_py.disk.mount import Mount, Mounts, is_mountpoint
from bootc_py.disk.plan import PartitionPlan, PartType, PlannedPartition, Role
from bootc_py.errors import DiskError
from bootc_py.run import run
from testlib import require_root, require_tool

TOOLS = ("losetup", "partx", "sgdisk", "blkid", "mkfs.vfat", "mkfs.ext4", "mmd", "mcopy",
         "mdir", "mdel", "mdeltree", "mount", "umount")


# The same helpers as test_disk_apply.py (test modules here cannot import each other reliably).
class Boom(Exception):
    pass


@pytest.fixture
def work(tmp_path: Path) -> Iterator[Path]:
    require_root()
    require_tool(*TOOLS)
    yield tmp_path  # the integration conftest fails the test if anything is left behind


def partitioned(path: Path, size: int = GiB) -> Path:
    """A sparse disk image with a GPT of two partitions: 64 MiB ESP, then the rest."""
    create_sparse(path, size)
    parts = (PlannedPartition(1, Role.ESP, MiB, 64 * MiB, PartType.ESP, "esp"),
             PlannedPartition(2, Role.ROOT, 65 * MiB, size - 66 * MiB, PartType.LINUX_FS, "data"))
    write_table(path, PartitionPlan(size, 512, parts))  # pyparted: quicker than sgdisk's sleep
    return path


def gone(loop: Path) -> bool:
    sysdir = Path("/sys/block") / loop.name
    return not (sysdir / "loop").exists() and not any(
        (c / "partition").exists() for c in sysdir.iterdir())


def release_later(fd: int, delay: float) -> threading.Thread:
    def release() -> None:
        time.sleep(delay)
        os.close(fd)

    t = threading.Thread(target=release)
    t.start()
    return t


def test_create_sparse(work: Path) -> None:
    f = work / "d" / "disk.raw"
    create_sparse(f, 4 * GiB)
    assert f.stat().st_size == 4 * GiB and f.stat().st_blocks == 0
    f.write_bytes(b"x" * 4096)
    create_sparse(f, GiB)  # recreated: old content does not leak through
    with open(f, "rb") as fh:
        assert f.stat().st_size == GiB and fh.read(4096) == b"\0" * 4096


def test_loop_device_attaches_partitions_and_detaches(work: Path) -> None:
    disk = partitioned(work / "disk.raw")
    with LoopDevice(disk) as loop:
        assert loops_of(disk) == [loop.path]
        assert Path(f"/sys/block/{loop.path.name}/loop/backing_file").read_text().strip() \
            == str(disk)
        for n in (1, 2):
            assert loop.partition(n).is_block_device()
        assert not loop.partition(3).exists()
        path = loop.path
    assert loops_of(disk) == [] and gone(path)
    assert not Path(f"{path}p1").exists()
    with pytest.raises(DiskError, match="no loop device is attached"):
        _ = loop.path


def test_loop_device_rescan_after_repartitioning(work: Path) -> None:
    disk = partitioned(work / "disk.raw")
    with LoopDevice(disk) as loop:
        run(["sgdisk", "--clear", "-n", "1:0:+10M", "-n", "2:0:+10M", "-n", "3:0:+10M",
             loop.path], quiet=True)
        loop.rescan()
        assert [loop.partition(n).is_block_device() for n in (1, 2, 3)] == [True] * 3
        assert Path(f"/sys/block/{loop.path.name}/{loop.path.name}p2/start").read_text() \
            .strip() == str(11 * MiB // 512)


def test_loop_device_with_4k_sectors(work: Path) -> None:
    disk = create_sparse(work / "disk.raw", GiB)
    with LoopDevice(disk, sector_size=4096) as loop:
        sysdir = Path(f"/sys/block/{loop.path.name}")
        assert (sysdir / "queue/logical_block_size").read_text().strip() == "4096"


def test_loop_device_detached_when_the_body_raises(work: Path) -> None:
    disk = partitioned(work / "disk.raw")
    with pytest.raises(Boom), LoopDevice(disk) as loop:
        path = loop.path
        raise Boom
    assert loops_of(disk) == [] and gone(path)


def test_missing_image_file(work: Path) -> None:
    with pytest.raises(DiskError, match="does not exist"), LoopDevice(work / "nope.raw"):
        pass


def test_detach_waits_until_the_last_user_lets_go(work: Path) -> None:
    disk = partitioned(work / "disk.raw")
    loop = LoopDevice(disk)
    loop.attach()
    path = loop.path
    fd = os.open(loop.partition(2), os.O_RDONLY)
    t = release_later(fd, 0.5)
    start = time.monotonic()
    loop.detach()  # the kernel only marks it for autoclear while fd is open
    assert time.monotonic() - start >= 0.4
    t.join()
    assert gone(path) and loops_of(disk) == []


def test_exit_stack_unwinds_mount_and_loop_on_error(work: Path) -> None:
    disk = partitioned(work / "disk.raw")
    target = work / "mnt"
    with pytest.raises(Boom), ExitStack() as stack:
        loop = stack.enter_context(LoopDevice(disk))
        run(["mkfs.ext4", "-q", "-F", loop.partition(2)])
        stack.enter_context(Mount(loop.partition(2), target))
        (target / "file").write_text("x")
        path = loop.path
        raise Boom
    assert not is_mountpoint(target) and gone(path) and loops_of(disk) == []


def test_unmount_retries_while_busy(work: Path, caplog: pytest.LogCaptureFixture) -> None:
    disk = partitioned(work / "disk.raw")
    with LoopDevice(disk) as loop:
        run(["mkfs.ext4", "-q", "-F", loop.partition(2)])
        target = work / "mnt"
        with Mount(loop.partition(2), target):
            fd = os.open(target / "busy", os.O_CREAT | os.O_WRONLY, 0o644)
            t = release_later(fd, 0.3)
        t.join()
        assert not is_mountpoint(target)
        assert "lazily" not in caplog.text


def test_unmount_goes_lazy_when_still_busy(work: Path, caplog: pytest.LogCaptureFixture,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mount_mod, "UMOUNT_TRIES", 2)
    disk = partitioned(work / "disk.raw")
    with LoopDevice(disk) as loop:
        run(["mkfs.ext4", "-q", "-F", loop.partition(2)])
        target = work / "mnt"
        caplog.set_level(logging.WARNING)
        fd = -1
        try:
            with Mount(loop.partition(2), target):
                fd = os.open(target / "busy", os.O_CREAT | os.O_WRONLY, 0o644)
            assert not is_mountpoint(target)
            assert "still busy; detaching it lazily" in caplog.text
        finally:
            if fd >= 0:
                os.close(fd)  # the lazily detached filesystem lets the loop device go


def test_mounts_unmount_in_reverse_order(work: Path, caplog: pytest.LogCaptureFixture) -> None:
    disk = partitioned(work / "disk.raw")
    with LoopDevice(disk) as loop:
        run(["mkfs.ext4", "-q", "-F", "-L", "boot", loop.partition(2)])
        (work / "src").mkdir()
        (work / "src/file").write_text("data\n")
        with Mounts() as mounts:
            root = mounts.mount("tmpfs", work / "root", "tmpfs", ("size=16m",))
            boot = mounts.mount(loop.partition(2), root / "boot")
            ro = mounts.bind(work / "src", root / "src", read_only=True)
            assert mounts.targets == (root, boot, ro)
            assert (ro / "file").read_text() == "data\n"
            with pytest.raises(OSError):
                (ro / "new").write_text("x")
            (boot / "kept").write_text("yes\n")
        assert not any(is_mountpoint(p) for p in (root, boot, ro))
        assert "lazily" not in caplog.text
        with Mount(loop.partition(2), work / "again") as m:
            assert (m.target / "kept").read_text() == "yes\n"


def test_mounts_unwind_when_the_body_raises(work: Path) -> None:
    with pytest.raises(Boom), Mounts() as mounts:
        root = mounts.mount("tmpfs", work / "root", "tmpfs")
        inner = mounts.mount("tmpfs", root / "inner", "tmpfs")
        raise Boom
    assert not is_mountpoint(inner) and not is_mountpoint(root)


@pytest.mark.parametrize("on", ["partition", "image-file"])
def test_esp_round_trip(work: Path, on: str) -> None:
    with ExitStack() as stack:
        if on == "partition":
            loop = stack.enter_context(LoopDevice(partitioned(work / "disk.raw")))
            dev = loop.partition(1)
        else:
            dev = create_sparse(work / "efi.img", 64 * MiB)
        run(["mkfs.vfat", "-F", "32", "-n", "EFI-SYSTEM", dev], quiet=True)
        esp = Esp(dev)
        assert esp.listdir("/") == []
        free = esp.free_bytes()

        payload = os.urandom(300_000)
        src = work / "BOOTX64.EFI"
        src.write_bytes(payload)
        esp.copy(src, "/EFI/BOOT/BOOTX64.EFI")
        assert esp.read("/efi/boot/bootx64.efi") == payload
        src.write_bytes(b"newer")
        esp.copy(src, "/EFI/BOOT/BOOTX64.EFI")  # overwrite
        assert esp.read("/EFI/BOOT/BOOTX64.EFI") == b"newer"

        esp.mkdir("/loader/entries")
        esp.mkdir("/loader/entries")  # idempotent
        esp.write_text("/loader/loader.conf", "timeout 3\neditor no\n")
        esp.write_text("/loader/entries/ostree-1-debian.conf", "title Debian\nversion 1\n")
        assert esp.listdir("/") == ["EFI", "loader"]
        assert esp.listdir("/loader") == ["entries", "loader.conf"]
        assert esp.read_text("/loader/loader.conf") == "timeout 3\neditor no\n"
        assert esp.is_dir("/loader/entries") and not esp.is_dir("/loader/loader.conf")

        tree = work / "tree"
        (tree / "debian-abc").mkdir(parents=True)
        (tree / "debian-abc/vmlinuz-6.1").write_bytes(os.urandom(2 * MiB))
        (tree / "debian-abc/initramfs-6.1.img").write_bytes(b"initrd")
        esp.copy_tree(tree, "/ostree")
        assert esp.listdir("/ostree/debian-abc") == ["initramfs-6.1.img", "vmlinuz-6.1"]
        assert free - esp.free_bytes() >= 2 * MiB

        esp.remove("/loader/loader.conf")
        esp.remove("/loader/loader.conf")  # already gone: fine
        esp.remove_tree("/ostree")
        esp.remove_tree("/ostree")
        assert esp.listdir("/") == ["EFI", "loader"]
        with pytest.raises(DiskError, match="is not a file"):
            esp.read("/loader/loader.conf")
        with pytest.raises(DiskError, match="is a directory"):
            esp.remove("/loader")
        with pytest.raises(DiskError, match="not a file"):
            esp.copy(work / "missing", "/x")


def test_unwinding_thaws_a_frozen_filesystem_so_its_loop_device_goes(work: Path) -> None:
    """A signal at deploy can kill ostree while it holds /boot frozen. umount of a frozen
    filesystem succeeds but leaves its superblock frozen and alive: the loop device stayed
    attached for good (seen in CI). Unwinding thaws the mounts first."""
    require_tool("fsfreeze")
    disk = work / "boot.img"
    create_sparse(disk, 64 * MiB)
    run(["mkfs.ext4", "-q", str(disk)])
    loop_path = None
    try:
        with pytest.raises(Boom), LoopDevice(disk) as loop, \
                Mounts() as mounts:
            loop_path = loop.path
            target = mounts.mount(loop.path, work / "boot", fstype="ext4")
            run(["fsfreeze", "--freeze", str(target)])      # as a killed ostree leaves it
            raise Boom
        assert loop_path is not None and gone(loop_path)
        assert loops_of(disk) == []
    finally:
        for stuck in loops_of(disk):    # without the fix: thaw it through a new mount
            (work / "rescue").mkdir(exist_ok=True)
            run(["mount", str(stuck), str(work / "rescue")], check=False)
            run(["fsfreeze", "--unfreeze", str(work / "rescue")], check=False)
            run(["umount", str(work / "rescue")], check=False)
            run(["losetup", "--detach", str(stuck)], check=False)
