"""The install choices that had never booted: an ext4 root (with a stateroot other than
`default`), a btrfs root, the vmdk and vhd disks `bootc-py build` writes, and an install made
with `--bootloader none` that got its bootloaders later from `install bootloader`.

Boots: ext4+stateroot 1, btrfs 1, vmdk 1, vhd 1, bootloader none + install bootloader 1.
Each disk starts from `installed_disk` (installed once per session) or from one `build` run
for both formats. The ext4 boot also
runs `bootc-py usr-overlay` (only a booted host can).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bootc_py.disk.loop import LoopDevice
from bootc_py.disk.mount import Mount
from vmharness import Drive
from vmharness.samples import SampleImages

BOOTC_PY = Path(sys.executable).parent / "bootc-py"
CONSOLE = "--karg=console=ttyS0,115200n8"

BootCheck = Callable[..., dict[str, Any]]


def assert_booted(facts: dict[str, Any], *, fstype: str, stateroot: str = "default",
                  usr_overlay: bool = False) -> None:
    """The deployment booted from a root of `fstype` in `stateroot`, as the guest sees it
    (with `usr_overlay`, after `bootc-py usr-overlay` made /usr a writable overlay)."""
    assert facts["variant"] == "v1"
    assert facts["failed_units"] == []
    mounts = facts["mounts"]
    assert mounts["/"]["fstype"] == fstype
    assert mounts["/sysroot"]["fstype"] == fstype
    assert f"/ostree/deploy/{stateroot}/deploy/" in mounts["/"]["source"]
    assert mounts["/var"]["source"].endswith(f"[/ostree/deploy/{stateroot}/var]")
    assert mounts["/var"]["writable"] and mounts["/etc"]["writable"]
    if usr_overlay:
        assert mounts["/usr"]["fstype"] == "overlay" and mounts["/usr"]["writable"]
    else:
        assert mounts["/usr"]["ro"] and not mounts["/usr"]["writable"]
    booted = facts["ostree"]["booted_deployment"]
    assert booted is not None and booted["stateroot"] == stateroot
    status = facts["bootc_py"]
    assert status and status["ok"], status
    assert status["status"]["status"]["booted"]["ostree"]["stateroot"] == stateroot


def test_ext4_root_in_its_own_stateroot_boots(installed_disk: Callable[..., Path],
                                              boot_check: BootCheck) -> None:
    disk = installed_disk("--filesystem=ext4", "--stateroot=corp", CONSOLE)
    facts = boot_check(Drive(disk), firmware="uefi", name="ext4-corp", script=USR_OVERLAY,
                       last=True)
    assert_booted(facts, fstype="ext4", stateroot="corp", usr_overlay=True)
    assert facts["mounts"]["/boot"]["fstype"] == "ext4"
    script = facts["script"]
    assert script is not None and script["rc"] == 0, script
    out = script["stdout"].split()
    assert out[0] == "read-only"  # before usr-overlay
    assert "fstype=overlay" in out and out[-1] == "written"


# README: `bootc-py usr-overlay` makes /usr writable until the next boot.
USR_OVERLAY = """touch /usr/share/bootc-py-overlay 2>/dev/null && echo writable || echo read-only
bootc-py usr-overlay
echo fstype=$(findmnt -no FSTYPE /usr | tail -n1)  # the top of the stack
touch /usr/share/bootc-py-overlay && echo written
"""


def test_btrfs_root_boots(installed_disk: Callable[..., Path], boot_check: BootCheck) -> None:
    disk = installed_disk("--filesystem=btrfs", CONSOLE)
    facts = boot_check(Drive(disk), firmware="bios", name="btrfs", last=True)
    assert_booted(facts, fstype="btrfs")


@pytest.mark.timeout(2700)  # one build, two cold boots
def test_vmdk_and_vhd_from_build_boot(sample_images: SampleImages, boot_check: BootCheck,
                                      tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = subprocess.run([str(BOOTC_PY), "build", "--type", "vmdk,vhd", "--output", str(out),
                          CONSOLE, sample_images.ref("v1")],
                         capture_output=True, text=True, timeout=1800)
    assert res.returncode == 0, res.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(a["path"] for a in manifest["artifacts"]) == ["vmdk/disk.vmdk",
                                                               "vpc/disk.vhd"]
    vmdk_info = json.loads(subprocess.run(
        ["qemu-img", "info", "--output=json", str(out / "vmdk/disk.vmdk")],
        check=True, capture_output=True, text=True).stdout)
    assert vmdk_info["format"] == "vmdk"
    # A fixed VHD is the raw disk plus a 512-byte footer, so qemu's probe (which reads the
    # start) calls it raw: check the footer ("conectix", disk type 2 = fixed) instead.
    with open(out / "vpc/disk.vhd", "rb") as f:
        f.seek(-512, 2)
        footer = f.read(512)
    assert footer[:8] == b"conectix" and int.from_bytes(footer[60:64], "big") == 2
    for path, fmt in (("vmdk/disk.vmdk", "vmdk"), ("vpc/disk.vhd", "vpc")):
        # qemu reads the file as that format, not as raw; the guest writes into a qcow2 over
        # it (qemu cannot write a streamOptimized vmdk: the boot saw write I/O errors).
        over = tmp_path / f"{fmt}-overlay.qcow2"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", fmt, "-b",
                        str(out / path), str(over)], check=True)
        facts = boot_check(Drive(over), firmware="uefi", name=fmt, last=True)
        assert_booted(facts, fstype="xfs")


def test_bootloader_none_then_install_bootloader_boots(
        installed_base: Callable[..., Path], boot_check: BootCheck, tmp_path: Path) -> None:
    # The README's way: an install without bootloaders, its root and /boot mounted, then
    # `install bootloader` (GRUB for BIOS and UEFI); the disk boots on its own.
    disk = tmp_path / "disk.raw"
    shutil.copyfile(installed_base("--bootloader=none", CONSOLE), disk)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    with LoopDevice(disk) as loop, Mount(loop.partition(4), mnt), \
            Mount(loop.partition(3), mnt / "boot"):
        assert not (mnt / "boot/grub").exists()
        res = subprocess.run([str(BOOTC_PY), "install", "bootloader", "--generic-image",
                              str(mnt)], capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stderr[-3000:]
        assert res.stdout.strip() == f"Installed grub-bios, grub-efi into {mnt}"
    facts = boot_check(Drive(disk), firmware="bios", name="bootloader-added", last=True)
    assert_booted(facts, fstype="xfs")
    assert facts["mounts"]["/boot"]["fstype"] == "ext4"
