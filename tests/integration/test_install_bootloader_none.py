"""`install to-disk --bootloader none`, then `install bootloader`: the deployment and its BLS
entry with no bootloader at all, then GRUB for BIOS and UEFI added to the mounted install
(the way `install bootloader --help` and the README document). The VM test boots such a disk
(tests/vm/test_install_coverage.py).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from synthetic import SyntheticImages, run_cli

from bootc_py.disk.loop import LoopDevice
from bootc_py.disk.mount import Mount


def test_bootloader_none_then_install_bootloader(synthetic: SyntheticImages,
                                                 tmp_path: Path) -> None:
    disk = tmp_path / "disk.raw"
    res = run_cli("install", "to-disk", "--via-loopback", "--bootloader", "none",
                  "--source-imgref", synthetic.ref("v1"), "--cache-dir", str(synthetic.cache),
                  str(disk))
    assert res.returncode == 0, res.stderr
    assert res.stdout.rstrip().endswith("bootloaders none")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    with LoopDevice(disk) as loop, Mount(loop.partition(4), mnt), \
            Mount(loop.partition(3), mnt / "boot"):
        assert [p.name for p in (mnt / "boot/loader/entries").iterdir()] == [
            "ostree-1-default.conf"]
        assert not (mnt / "boot/grub").exists()  # no grub.cfg, no GRUB modules
        esp = subprocess.run(["mdir", "-b", "-i", str(loop.partition(2)), "::/"],
                             capture_output=True, text=True,
                             env={**os.environ, "MTOOLS_SKIP_CHECK": "1"})
        assert esp.stdout.strip() == ""  # the ESP is formatted and empty
        with open(loop.partition(1), "rb") as f:
            bios_boot = f.read(1 << 16)
        assert bios_boot == bytes(len(bios_boot))  # no GRUB core.img
        # to-filesystem refuses an install and names the verb that adds bootloaders.
        res = run_cli("install", "to-filesystem", "--source-imgref", synthetic.ref("v1"),
                      "--cache-dir", str(synthetic.cache), str(mnt))
        assert res.returncode == 2
        errors = [x for x in res.stderr.splitlines() if x.startswith(("error: ", "hint: "))]
        assert errors == [f"error: {mnt} is not empty (found .bootc-aleph.json, ostree)",
                          "hint: it holds an install already; to add bootloaders to it run "
                          f"'bootc-py install bootloader {mnt}'"]

        dry = run_cli("install", "bootloader", "--generic-image", "--dry-run", str(mnt))
        assert dry.returncode == 0, dry.stderr
        assert "Bootloaders:  grub-bios, grub-efi" in dry.stdout
        assert not (mnt / "boot/grub").exists()  # a dry run writes nothing

        res = run_cli("install", "bootloader", "--generic-image", str(mnt))
        assert res.returncode == 0, res.stderr
        assert res.stdout.strip() == f"Installed grub-bios, grub-efi into {mnt}"
        cfg = (mnt / "boot/grub/grub.cfg").read_text()
        entry = (mnt / "boot/loader/entries/ostree-1-default.conf").read_text()
        linux = next(x.split(None, 1)[1] for x in entry.splitlines() if x.startswith("linux "))
        assert linux in cfg  # the menu is generated from the BLS entry
        assert (mnt / "boot/bootc-py/bootloader.json").is_file()
        aleph = json.loads((mnt / ".bootc-aleph.json").read_text())
        assert aleph["bootloaders"] == ["grub-bios", "grub-efi"]
        esp = subprocess.run(["mdir", "-b", "-i", str(loop.partition(2)), "::/EFI/BOOT"],
                             capture_output=True, text=True,
                             env={**os.environ, "MTOOLS_SKIP_CHECK": "1"})
        assert esp.stdout.split() == ["::/EFI/BOOT/BOOTX64.EFI"], esp.stdout + esp.stderr
        with open(loop.partition(1), "rb") as f:
            assert f.read(1 << 16) != bytes(1 << 16)  # GRUB's core.img is written
        with open(loop.path, "rb") as f:
            assert f.read(512)[510:] == b"\x55\xaa"  # and its boot code in the MBR

        # A second run repairs: it says what it replaces.
        again = run_cli("install", "bootloader", "--generic-image", str(mnt))
        assert again.returncode == 0, again.stderr
        assert "(replacing grub-bios, grub-efi)" in again.stdout


def test_install_bootloader_refusals(tmp_path: Path) -> None:
    res = run_cli("install", "bootloader", "--bootloader", "none", str(tmp_path))
    assert res.returncode == 2
    assert "error: --bootloader none: this verb installs grub or systemd" in res.stderr
    res = run_cli("install", "bootloader", str(tmp_path))
    assert res.returncode == 2
    assert f"error: {tmp_path} is not a mount point" in res.stderr
    assert "Traceback" not in res.stderr
