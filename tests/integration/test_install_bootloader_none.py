"""`install to-disk --bootloader none`: the deployment and its BLS entry, no bootloader at all,
and (issue 11, open) no way bootc-py documents to add one afterwards.

The README and `install to-filesystem --help` say to-filesystem installs "the bootloaders the
disk under the root can carry"; run on the mounted root of a `--bootloader none` install it
refuses, because the root is not empty. Nothing else (no `bootloader` verb, no option) adds a
bootloader to an installed sysroot. This test pins what happens today so that the day such a
way exists, it flips into the boot test it should be (tests/vm/test_install_coverage.py).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from synthetic import SyntheticImages, run_cli

from bootc_py.disk.loop import LoopDevice
from bootc_py.disk.mount import Mount


def test_bootloader_none_then_to_filesystem(synthetic: SyntheticImages, tmp_path: Path) -> None:
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
        # The documented way to install a bootloader into your own layout is to-filesystem;
        # it refuses the installed root (the finding: nothing adds a bootloader later).
        res = run_cli("install", "to-filesystem", "--source-imgref", synthetic.ref("v1"),
                      "--cache-dir", str(synthetic.cache), str(mnt))
        assert res.returncode == 2
        errors = [x for x in res.stderr.splitlines() if x.startswith("error: ")]
        assert errors == [f"error: {mnt} is not empty (found .bootc-aleph.json, ostree)"]
        assert [p.name for p in (mnt / "boot/loader/entries").iterdir()] == [
            "ostree-1-default.conf"]  # untouched
