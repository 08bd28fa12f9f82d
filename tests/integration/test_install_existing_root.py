"""install to-existing-root onto a "running system" made on loop devices, its refusals, and
install finalize. (The real takeover of a booted machine is tests/vm/test_takeover_boot.py.)"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from synthetic import SyntheticImages, run_cli

from bootc_py.disk.esp import Esp
from bootc_py.disk.loop import LoopDevice
from bootc_py.disk.mount import Mount
from bootc_py.installer import cleanup_unit

OLD_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOldSystemKeyOldSystemKeyOldSystemKey0 old@host\n"


def sh(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def _old_system(root: Path) -> None:
    """What a stock Debian leaves on its root: /usr, /etc, a kernel in /boot, root's keys."""
    for d in ("usr/bin", "etc", "var/log", "home/user", "root/.ssh", "boot/grub"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "etc/debian_version").write_text("12.0\n")
    (root / "home/user/notes.txt").write_text("keep me readable\n")
    (root / "boot/vmlinuz-6.1.0-old-amd64").write_text("old kernel\n")
    (root / "boot/grub/grub.cfg").write_text("# the old system's menu\n")
    (root / "root/.ssh/authorized_keys").write_text(OLD_KEY)


def _disk(tmp_path: Path, size: int = 4 << 30) -> Path:
    disk = tmp_path / "old.raw"
    with open(disk, "wb") as f:
        f.truncate(size)
    sh("sgdisk", "-n", "1:0:+1M", "-t", "1:EF02", "-n", "2:0:+100M", "-t", "2:EF00",
       "-n", "3:0:0", "-t", "3:8300", str(disk))
    return disk


def _deployment(root: Path) -> Path:
    return next((root / "ostree/deploy/default/deploy").glob("*.0"))


def test_alongside_keeps_old_files_replaces_bootloader_carries_keys(
        synthetic: SyntheticImages, tmp_path: Path) -> None:
    disk = _disk(tmp_path)
    mnt = tmp_path / "mnt"
    with LoopDevice(disk) as loop:
        sh("mkfs.vfat", "-F", "32", str(loop.partition(2)))
        esp = Esp(loop.partition(2))
        for d in ("EFI", "EFI/debian"):
            esp.mkdir(d)
        esp.write_text("EFI/debian/grubx64.efi", "the old system's GRUB")
        sh("mkfs.ext4", "-q", str(loop.partition(3)))
        with Mount(loop.partition(3), mnt):
            _old_system(mnt)
            res = run_cli("install", "to-existing-root", "--source-imgref", synthetic.ref("v1"),
                          "--cache-dir", str(synthetic.cache), "--acknowledge-destructive",
                          "--cleanup", str(mnt))
            assert res.returncode == 0, res.stderr
            assert "alongside the system on" in res.stdout
            # The old system is untouched, beside the new sysroot.
            assert (mnt / "home/user/notes.txt").read_text() == "keep me readable\n"
            assert (mnt / "etc/debian_version").is_file()
            assert (mnt / "boot/vmlinuz-6.1.0-old-amd64").is_file()
            dep = _deployment(mnt)
            assert (dep / "usr/share/syn/variant").read_text() == "v1\n"
            # The bootloader is the image's: grub.cfg lists the ostree entry, GRUB in the MBR,
            # the fallback EFI binary and the old vendor GRUB both replaced.
            grub_cfg = (mnt / "boot/grub/grub.cfg").read_text()
            assert "linux /boot/ostree/default-" in grub_cfg
            assert "the old system's menu" not in grub_cfg
            # Root's keys carried from the old system (no --root-ssh-authorized-keys given).
            keys = mnt / "ostree/deploy/default/var/roothome/.ssh/authorized_keys"
            assert keys.read_text() == OLD_KEY
            assert oct(keys.stat().st_mode & 0o777) == "0o600"
            # --cleanup: the first-boot unit, enabled, and its flag on the physical root.
            unit = dep / "etc/systemd/system" / cleanup_unit.UNIT
            assert "ConditionPathExists=/sysroot/.bootc-py-destructive-cleanup" in unit.read_text()
            link = dep / "etc/systemd/system/multi-user.target.wants" / cleanup_unit.UNIT
            assert os.readlink(link) == f"/etc/systemd/system/{cleanup_unit.UNIT}"
            assert (mnt / cleanup_unit.FLAG).is_file()
            # finalize on the finished install: the bootloader regenerated, nothing lost.
            fin = run_cli("install", "finalize", str(mnt))
            assert fin.returncode == 0, fin.stderr
            assert "1 deployment(s)" in fin.stdout and "grub.cfg (1 entries)" in fin.stdout
            # A second takeover is refused: it is an ostree system now.
            again = run_cli("install", "to-existing-root", "--source-imgref",
                            synthetic.ref("v1"), "--cache-dir", str(synthetic.cache),
                            "--acknowledge-destructive", str(mnt))
            assert again.returncode == 2
            assert "is already an ostree system" in again.stderr
        assert esp.read("EFI/BOOT/BOOTX64.EFI")[:2] == b"MZ"
        assert esp.read("EFI/debian/grubx64.efi")[:2] == b"MZ"
    with open(disk, "rb") as f:
        assert b"GRUB" in f.read(512)


def test_wipe_empties_a_root_that_is_not_the_running_one(synthetic: SyntheticImages,
                                                          tmp_path: Path) -> None:
    disk = _disk(tmp_path)
    mnt = tmp_path / "mnt"
    with LoopDevice(disk) as loop:
        sh("mkfs.vfat", "-F", "32", str(loop.partition(2)))
        sh("mkfs.ext4", "-q", str(loop.partition(3)))
        with Mount(loop.partition(3), mnt):
            _old_system(mnt)
            res = run_cli("install", "to-existing-root", "--replace=wipe",
                          "--source-imgref", synthetic.ref("v1"), "--cache-dir",
                          str(synthetic.cache), "--acknowledge-destructive", str(mnt))
            assert res.returncode == 0, res.stderr
            assert not (mnt / "home").exists() and not (mnt / "etc").exists()
            assert not (mnt / "boot/vmlinuz-6.1.0-old-amd64").exists()
            assert _deployment(mnt).is_dir()
            # Keys were read before the wipe and carried.
            keys = mnt / "ostree/deploy/default/var/roothome/.ssh/authorized_keys"
            assert keys.read_text() == OLD_KEY


def test_not_enough_space_is_refused_with_the_figures_before_any_write(
        synthetic: SyntheticImages, tmp_path: Path) -> None:
    small = tmp_path / "small.raw"
    with open(small, "wb") as f:
        f.truncate(64 << 20)
    sh("mkfs.ext4", "-q", str(small))
    mnt = tmp_path / "mnt"
    with LoopDevice(small) as loop, Mount(loop.path, mnt):
        _old_system(mnt)
        before = sorted(p.name for p in mnt.iterdir())
        res = run_cli("install", "to-existing-root", "--source-imgref", synthetic.ref("v1"),
                      "--cache-dir", str(synthetic.cache), "--acknowledge-destructive",
                      str(mnt))
        assert res.returncode == 1
        err = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
        assert len(err) == 1
        assert err[0].startswith(f"error: not enough free space on {mnt} ({loop.path})")
        assert " MiB (the image unpacks to " in err[0] and " is free" in err[0]
        assert "Traceback" not in res.stderr
        assert sorted(p.name for p in mnt.iterdir()) == before  # no ostree/, nothing new
        assert not (mnt / "boot/loader").exists()


def test_wipe_of_the_running_root_is_refused() -> None:
    res = run_cli("install", "to-existing-root", "--replace=wipe", "--dry-run",
                  "--source-imgref", "oci:/nonexistent:v1", "/")
    assert res.returncode == 2
    assert "--replace=wipe cannot empty /: this system runs from it" in res.stderr


def test_target_missing_says_how_to_mount_it(tmp_path: Path) -> None:
    res = run_cli("install", "to-existing-root", "--source-imgref", "oci:/nonexistent:v1",
                  str(tmp_path / "target"))
    assert res.returncode == 2
    assert "does not exist or is not a directory" in res.stderr


def test_finalize_refuses_what_is_not_an_install(tmp_path: Path) -> None:
    res = run_cli("install", "finalize", str(tmp_path))
    assert res.returncode == 2
    assert "holds no ostree sysroot" in res.stderr
