"""install to-filesystem into filesystems the caller prepared."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from synthetic import SyntheticImages, run_cli

from bootc_py.disk.esp import Esp
from bootc_py.disk.loop import LoopDevice
from bootc_py.disk.mount import Mount


def sh(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def test_root_only_layout_with_boot_on_root(synthetic: SyntheticImages, tmp_path: Path) -> None:
    """A BIOS boot partition, an ESP and one ext4 root holding /boot as a directory."""
    disk = tmp_path / "fs.raw"
    with open(disk, "wb") as f:
        f.truncate(4 << 30)
    sh("sgdisk", "-n", "1:0:+1M", "-t", "1:EF02", "-n", "2:0:+100M", "-t", "2:EF00",
       "-n", "3:0:0", "-t", "3:8304", str(disk))
    mnt = tmp_path / "mnt"
    with LoopDevice(disk) as loop:
        sh("mkfs.vfat", "-F", "32", str(loop.partition(2)))
        sh("mkfs.ext4", "-q", "-L", "myroot", str(loop.partition(3)))
        root_uuid = sh("blkid", "-s", "UUID", "-o", "value", str(loop.partition(3))).strip()
        with Mount(loop.partition(3), mnt):
            res = run_cli("install", "to-filesystem", "--source-imgref", synthetic.ref("v1"),
                          "--cache-dir", str(synthetic.cache), "--generic-image", str(mnt))
            assert res.returncode == 0, res.stderr
            entry = next((mnt / "boot/loader/entries").glob("*.conf")).read_text()
            assert f"options root=UUID={root_uuid} rw" in entry
            grub_cfg = (mnt / "boot/grub/grub.cfg").read_text()
            assert f"--set=root {root_uuid}" in grub_cfg
            assert "    linux /boot/ostree/default-" in grub_cfg  # /boot is on the root fs
            setup = json.loads((mnt / "boot/bootc-py/bootloader.json").read_text())
            assert setup["grub_prefix"] == "/boot/grub"
            fstab = next((mnt / "ostree/deploy/default/deploy").glob("*.0")) / "etc/fstab"
            assert " /boot " not in fstab.read_text()
            # Refused the second time: the filesystem is no longer empty.
            again = run_cli("install", "to-filesystem", "--source-imgref", synthetic.ref("v1"),
                            "--cache-dir", str(synthetic.cache), str(mnt))
            assert again.returncode == 2 and "is not empty" in again.stderr
        assert Esp(loop.partition(2)).read("EFI/BOOT/BOOTX64.EFI")[:2] == b"MZ"
    with open(disk, "rb") as f:
        assert b"GRUB" in f.read(512)


def test_not_a_mount_point(synthetic: SyntheticImages, tmp_path: Path) -> None:
    res = run_cli("install", "to-filesystem", "--source-imgref", synthetic.ref("v1"),
                  str(tmp_path))
    assert res.returncode == 2
    assert "is not a mount point" in res.stderr
