"""Bad input: each is a one-line error, and the target is left as it was."""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from synthetic import SyntheticImages, base_tree, build_image, run_cli

from bootc_py.bootloader import grub
from bootc_py.disk.loop import LoopDevice
from bootc_py.disk.mount import Mount
from bootc_py.errors import BootloaderError
from testlib import require_tool


def digest(path: Path) -> str:
    """Hash of where anything was written: the GPT, the first partition, the backup GPT."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read(110 << 20))
        f.seek(-(1 << 20), 2)
        h.update(f.read())
    return h.hexdigest()


def one_line_error(stderr: str) -> str:
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, stderr
    assert "Traceback" not in stderr, stderr
    return errors[0]


@pytest.fixture()
def used_disk(tmp_path: Path) -> Path:
    """A disk image holding a partition table and an ext4 filesystem."""
    disk = tmp_path / "used.raw"
    disk.write_bytes(b"")
    with open(disk, "r+b") as f:
        f.truncate(5 << 30)
    subprocess.run(["sgdisk", "-n", "1:0:+100M", "-t", "1:8300", str(disk)], check=True,
                   capture_output=True)
    with LoopDevice(disk) as loop:
        subprocess.run(["mkfs.ext4", "-q", str(loop.partition(1))], check=True)
    return disk


@pytest.fixture()
def loop_disk(tmp_path: Path) -> Iterator[Path]:
    disk = tmp_path / "blank.raw"
    with open(disk, "wb") as f:
        f.truncate(5 << 30)
    with LoopDevice(disk) as loop:
        yield loop.path


def install(synthetic: SyntheticImages, *args: str, tag: str = "v1") -> tuple[int, str]:
    res = run_cli("install", "to-disk", "--source-imgref", synthetic.ref(tag),
                  "--cache-dir", str(synthetic.cache), *args)
    return res.returncode, res.stderr


def _pulled(cache: Path) -> list[Path]:
    return list(cache.rglob("sha256*"))


def test_missing_device_is_refused_before_the_pull(synthetic: SyntheticImages,
                                                   tmp_path: Path) -> None:
    cache = tmp_path / "fresh-cache"
    res = run_cli("install", "to-disk", "--source-imgref", synthetic.ref("v1"),
                  "--cache-dir", str(cache), str(tmp_path / "nope"))
    assert res.returncode != 0
    assert one_line_error(res.stderr) == f"error: {tmp_path / 'nope'} does not exist"
    assert not _pulled(cache), "a mistyped device cost a whole pull"


def test_mounted_device_is_refused_before_the_pull(synthetic: SyntheticImages, used_disk: Path,
                                                   tmp_path: Path) -> None:
    cache = tmp_path / "fresh-cache"
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    with LoopDevice(used_disk) as loop, Mount(loop.partition(1), mnt):
        res = run_cli("install", "to-disk", "--wipe", "--source-imgref", synthetic.ref("v1"),
                      "--cache-dir", str(cache), str(loop.path))
        assert res.returncode != 0
        assert "is mounted at" in one_line_error(res.stderr)
    assert not _pulled(cache)


def test_bad_target_imgref_is_refused_before_the_pull(synthetic: SyntheticImages,
                                                      loop_disk: Path, tmp_path: Path) -> None:
    cache = tmp_path / "fresh-cache"
    res = run_cli("install", "to-disk", "--wipe", "--target-imgref", "oci:", "--source-imgref",
                  synthetic.ref("v1"), "--cache-dir", str(cache), str(loop_disk))
    assert res.returncode == 2
    assert one_line_error(res.stderr).startswith("error: invalid image reference 'oci:'")
    assert not _pulled(cache)


def test_bad_target_imgref_to_a_filesystem_is_refused_before_the_pull(
        synthetic: SyntheticImages, tmp_path: Path) -> None:
    """to-filesystem (and to-existing-root, which shares its resolve step) read
    --target-imgref only after the whole pull."""
    cache, root, fs = tmp_path / "fresh-cache", tmp_path / "root", tmp_path / "fs.raw"
    fs.write_bytes(b"")
    os.truncate(fs, 64 << 20)
    subprocess.run(["mkfs.ext4", "-q", str(fs)], check=True)
    with LoopDevice(fs) as loop, Mount(loop.path, root):
        res = run_cli("install", "to-filesystem", "--target-imgref", "oci:", "--source-imgref",
                      synthetic.ref("v1"), "--cache-dir", str(cache), str(root))
    assert res.returncode == 2
    assert one_line_error(res.stderr).startswith("error: invalid image reference 'oci:'")
    assert not _pulled(cache)


def test_disk_size_on_an_existing_file_is_an_error(synthetic: SyntheticImages,
                                                   used_disk: Path) -> None:
    before = digest(used_disk)
    rc, err = install(synthetic, "--wipe", "--via-loopback", "--disk-size", "8G", str(used_disk))
    assert rc == 2
    assert one_line_error(err) == (
        f"error: --disk-size: {used_disk} exists already; its size is used")
    assert used_disk.stat().st_size == 5 << 30
    assert digest(used_disk) == before


@pytest.mark.parametrize("room", ["4m", "30m"])  # 30m: more than the tree, not enough for
def test_no_room_for_a_new_image_file_is_refused_before_creating_it(  # mkfs (was: an I/O error)
        synthetic: SyntheticImages, tmp_path: Path, room: str) -> None:
    small = tmp_path / "small"
    small.mkdir()
    with Mount("tmpfs", small, fstype="tmpfs", options=(f"size={room}",)):
        rc, err = install(synthetic, "--via-loopback", str(small / "disk.raw"))
        assert rc != 0
        line = one_line_error(err)
        assert line.startswith(f"error: no space left on the filesystem at {small}: the disk "
                               "image disk.raw needs "), line
        assert not (small / "disk.raw").exists()


def test_used_disk_without_wipe_is_refused_and_untouched(synthetic: SyntheticImages,
                                                          used_disk: Path) -> None:
    before = digest(used_disk)
    rc, err = install(synthetic, "--via-loopback", str(used_disk))
    assert rc != 0
    assert "--wipe" in err
    one_line_error(err)
    assert digest(used_disk) == before


@pytest.mark.parametrize("how", ["image file", "block device"])
def test_used_disk_without_wipe_is_refused_before_the_pull(
        synthetic: SyntheticImages, used_disk: Path, tmp_path: Path, how: str) -> None:
    """Forgetting --wipe cost a whole download: the emptiness check came after the pull."""
    cache = tmp_path / "fresh-cache"
    with contextlib.ExitStack() as stack:
        if how == "image file":
            target, args = used_disk, ["--via-loopback"]
        else:
            target, args = stack.enter_context(LoopDevice(used_disk)).path, []
        res = run_cli("install", "to-disk", "--source-imgref", synthetic.ref("v1"),
                      "--cache-dir", str(cache), *args, str(target))
    assert res.returncode != 0
    assert one_line_error(res.stderr).startswith(f"error: {target} is not empty: it has ")
    assert "use --wipe to erase it" in res.stderr
    assert not _pulled(cache), "a forgotten --wipe cost a whole pull"


def test_a_loop_device_whose_file_is_mounted_through_another_is_refused(
        synthetic: SyntheticImages, used_disk: Path, tmp_path: Path) -> None:
    """Only the loop device given was checked: its file, attached a second time with a
    partition mounted, was reformatted under that mount."""
    mnt = tmp_path / "mnt"
    with LoopDevice(used_disk) as first, Mount(first.partition(1), mnt), \
            LoopDevice(used_disk) as second:
        (mnt / "data").write_text("kept\n")
        rc, err = install(synthetic, "--wipe", str(second.path))
        assert rc != 0
        assert one_line_error(err) == (
            f"error: {used_disk} is in use: {first.partition(1)} (attached to it) is mounted "
            f"at {mnt}")
    with LoopDevice(used_disk) as loop, Mount(loop.partition(1), mnt):
        assert (mnt / "data").read_text() == "kept\n"  # the filesystem was not remade


def test_mounted_device_is_refused(synthetic: SyntheticImages, used_disk: Path,
                                   tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    with LoopDevice(used_disk) as loop, Mount(loop.partition(1), mnt):
        rc, err = install(synthetic, "--wipe", str(loop.path))
        assert rc != 0
        line = one_line_error(err)
        assert "mounted" in line and str(mnt) in line


def test_too_small_is_refused(synthetic: SyntheticImages, tmp_path: Path) -> None:
    """Smaller than any image needs: refused before the pull, naming the file the user gave
    (was: after the whole pull, naming the loop device it had been attached to)."""
    disk = tmp_path / "small.raw"
    with open(disk, "wb") as f:
        f.truncate(1 << 30)
    cache = tmp_path / "fresh-cache"
    res = run_cli("install", "to-disk", "--source-imgref", synthetic.ref("v1"),
                  "--cache-dir", str(cache), "--via-loopback", str(disk))
    assert res.returncode != 0
    assert one_line_error(res.stderr).startswith(
        f"error: {disk} is too small: 1 GiB (1073741824 bytes), need at least 2051 MiB ")
    assert not _pulled(cache), "a too small file cost a whole pull"
    assert disk.stat().st_size == 1 << 30
    new = tmp_path / "new.raw"
    res = run_cli("install", "to-disk", "--source-imgref", synthetic.ref("v1"),
                  "--cache-dir", str(cache), "--via-loopback", "--disk-size", "1G", str(new))
    assert one_line_error(res.stderr).startswith(f"error: {new} is too small: ")
    assert "hint: give a bigger --disk-size" in res.stderr
    assert not new.exists() and not _pulled(cache)
    with open(disk, "rb") as f:
        assert not f.read(1 << 20).strip(b"\0")  # no partition table was written


@pytest.mark.parametrize(("tag", "message"), [
    ("nokernel", "no kernel"),
    ("twokernels", "2 kernels"),
])
def test_unbootable_image_is_refused_before_writing(synthetic: SyntheticImages, tag: str,
                                                    message: str, loop_disk: Path) -> None:
    rc, err = install(synthetic, "--wipe", str(loop_disk), tag=tag)
    assert rc != 0
    assert message in one_line_error(err)
    probe = subprocess.run(["blkid", "-p", str(loop_disk)], capture_output=True, text=True)
    assert probe.returncode == 2  # still blank: nothing was written


def test_unknown_filesystem(synthetic: SyntheticImages, loop_disk: Path) -> None:
    rc, err = install(synthetic, "--wipe", "--filesystem", "zfs", str(loop_disk))
    assert rc == 2
    assert "unknown filesystem 'zfs'" in one_line_error(err)


def test_dry_run_prints_the_plan_and_writes_nothing(synthetic: SyntheticImages,
                                                    loop_disk: Path) -> None:
    res = run_cli("install", "to-disk", "--dry-run", "--wipe", "--filesystem", "ext4",
                  "--source-imgref", synthetic.ref("v1"), "--cache-dir", str(synthetic.cache),
                  str(loop_disk))
    assert res.returncode == 0, res.stderr
    assert "Root fs:      ext4" in res.stdout
    assert "EFI-SYSTEM" in res.stdout and "root" in res.stdout
    probe = subprocess.run(["blkid", "-p", str(loop_disk)], capture_output=True, text=True)
    assert probe.returncode == 2  # nothing found on the device: it was not written


def test_no_source_outside_a_container(tmp_path: Path) -> None:
    res = run_cli("install", "to-disk", "--via-loopback", str(tmp_path / "d.raw"))
    assert res.returncode != 0
    assert "--source-imgref" in res.stderr
    one_line_error(res.stderr)
    assert not (tmp_path / "d.raw").exists()


def test_too_small_new_image_file_is_not_left_behind(synthetic: SyntheticImages,
                                                     tmp_path: Path) -> None:
    disk = tmp_path / "new.raw"
    rc, err = install(synthetic, "--via-loopback", "--disk-size", "1G", str(disk))
    assert rc != 0
    assert "too small" in one_line_error(err)
    assert not disk.exists()


def test_image_file_with_mounted_partition_is_refused_and_untouched(
        synthetic: SyntheticImages, used_disk: Path, tmp_path: Path) -> None:
    """An install killed earlier leaves its file attached and mounted: reformatting it through a
    second loop device would corrupt it under the live mount."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    with LoopDevice(used_disk) as loop, Mount(loop.partition(1), mnt):
        before = digest(used_disk)
        rc, err = install(synthetic, "--wipe", "--via-loopback", str(used_disk))
        assert rc != 0
        assert one_line_error(err) == (
            f"error: {used_disk} is in use: {loop.partition(1)} (attached to it) is mounted "
            f"at {mnt}")
        assert f"losetup --detach {loop.path}" in err
        assert (mnt / "lost+found").is_dir()  # the live filesystem is intact
        assert digest(used_disk) == before


def test_image_file_attached_to_a_loop_device_is_refused(synthetic: SyntheticImages,
                                                         used_disk: Path) -> None:
    with LoopDevice(used_disk) as loop:
        before = digest(used_disk)
        rc, err = install(synthetic, "--wipe", "--via-loopback", str(used_disk))
        assert rc != 0
        assert one_line_error(err) == (
            f"error: {used_disk} is already attached to the loop device {loop.path}")
        assert digest(used_disk) == before


@pytest.mark.parametrize(("karg", "reason"), [
    ('console="ttyS0', "unbalanced quote"),
    ("quiet\nsplash", "it contains a newline"),
    ("root=/dev/sdb2", "a second root= is not allowed"),
    ("ro", "read-write"),
    ("x;halt", "';' is syntax on GRUB's linux line"),  # was installed: the disk did not boot
    ("a|b", "'|' is syntax on GRUB's linux line"),     # failed after partitioning and import
])
@pytest.mark.parametrize("dry_run", [True, False])
def test_bad_karg_is_refused_before_the_pull_and_any_write(
        synthetic: SyntheticImages, loop_disk: Path, tmp_path: Path, karg: str, reason: str,
        dry_run: bool) -> None:
    cache = tmp_path / "fresh-cache"
    res = run_cli("install", "to-disk", "--wipe", *(["--dry-run"] if dry_run else []),
                  "--karg", karg, "--source-imgref", synthetic.ref("v1"),
                  "--cache-dir", str(cache), str(loop_disk))
    assert res.returncode == 2
    line = one_line_error(res.stderr)
    assert line.startswith(f"error: kernel argument {karg!r} from --karg: ")
    assert reason in line
    assert not any(cache.rglob("sha256*")), "the image was pulled before the kargs were checked"
    probe = subprocess.run(["blkid", "-p", str(loop_disk)], capture_output=True, text=True)
    assert probe.returncode == 2  # still blank


def test_bad_karg_in_the_image_kargs_d_is_refused_before_writing(
        tmp_path: Path, loop_disk: Path) -> None:
    def bad_kargs_d(root: Path) -> None:
        base_tree(root)
        (root / "usr/lib/bootc/kargs.d/10-syn.toml").write_text('kargs = ["a=\\"b"]\n')

    ref = build_image(tmp_path / "oci", "badkargs", [bad_kargs_d], work=tmp_path / "build")
    res = run_cli("install", "to-disk", "--wipe", "--source-imgref", ref,
                  "--cache-dir", str(tmp_path / "cache"), str(loop_disk))
    assert res.returncode == 2
    assert one_line_error(res.stderr) == (
        f"error: kernel argument 'a=\"b' from {ref}'s /usr/lib/bootc/kargs.d/*.toml: it has "
        "an unbalanced quote (grub.cfg would not parse)")
    probe = subprocess.run(["blkid", "-p", str(loop_disk)], capture_output=True, text=True)
    assert probe.returncode == 2


def test_a_grub_cfg_that_does_not_parse_is_not_written(tmp_path: Path) -> None:
    require_tool("grub-script-check")
    good = grub.write_grub_cfg(tmp_path, "set timeout=3\nmenuentry 'a' {\n  linux /k rw\n}\n")
    with pytest.raises(BootloaderError, match="does not parse"):
        grub.write_grub_cfg(tmp_path, "menuentry 'a' {\n  linux /k a=\"b\n}\n")
    assert good.read_text().startswith("set timeout=3")  # the old one stays
    assert [p.name for p in good.parent.iterdir()] == ["grub.cfg"]


@pytest.mark.parametrize("option", ["--filesystem", "--rootfs"])
def test_install_accepts_rootfs_and_filesystem(synthetic: SyntheticImages, loop_disk: Path,
                                               option: str) -> None:
    res = run_cli("install", "to-disk", "--dry-run", "--wipe", option, "btrfs",
                  "--source-imgref", synthetic.ref("v1"), "--cache-dir", str(synthetic.cache),
                  str(loop_disk))
    assert res.returncode == 0, res.stderr
    assert "Root fs:      btrfs" in res.stdout


@pytest.mark.parametrize("option", ["--filesystem", "--rootfs"])
def test_build_accepts_rootfs_and_filesystem(synthetic: SyntheticImages, tmp_path: Path,
                                             option: str) -> None:
    res = run_cli("build", "--output", str(tmp_path / "out"), option, "zfs",
                  "--cache-dir", str(synthetic.cache), synthetic.ref("v1"))
    assert res.returncode == 2
    assert "unknown filesystem 'zfs'" in one_line_error(res.stderr)
