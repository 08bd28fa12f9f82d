"""The installer ISO: `build --type iso` of the sample image boots as a CD under BIOS and as
a USB stick (a disk) under UEFI. The CD, next to two empty virtio disks, has no kickstart: the
built-in default (bootc-image-builder's: LVM, reboot) leaves the disk open, so the console asks
which to erase and the test answers on the serial port. The USB stick, next to one empty disk,
installs unattended with the kickstart and the config.toml given to the build. Either installed
disk then boots on its own.

Boots per test: the ISO's live system (install, then the kickstart's reboot ends qemu:
-no-reboot) 1, the installed disk 1. Two tests: CD + BIOS, USB stick + UEFI. A third boots
the live system with inst.ks=hd:LABEL=KS:/ks.cfg naming a kickstart whose %pre fails: one
boot, no install.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from vmharness import VM, Drive
from vmharness.samples import SampleImages

BOOTC_PY = Path(sys.executable).parent / "bootc-py"
TARGET = "127.0.0.1:5000/bootc-py-fixture:v1"  # what the installed host updates from
LIVE_INSTALL_TIMEOUT = 1500


def build_iso(sample_images: SampleImages, out: Path, *args: str) -> Path:
    res = subprocess.run([str(BOOTC_PY), "build", "--type", "iso", "--output", str(out),
                          "--target-imgref", TARGET, "--karg", "console=ttyS0,115200n8",
                          *args, sample_images.ref("v1")], capture_output=True, text=True,
                         timeout=1800)
    assert res.returncode == 0, res.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert [(a["type"], a["path"]) for a in manifest["artifacts"]] == [
        ("iso", "bootiso/install.iso")]
    assert manifest["digest"] == sample_images.manifest_digest("v1")
    iso = out / "bootiso/install.iso"
    live_root = squashfs_listing(iso, out / "squashfs.img")
    assert "/etc/systemd/system/multi-user.target.wants/bootc-py-live-install.service" \
        in live_root
    # The payload's preflight summary, for the live installer (which then does not scan again).
    assert [p for p in live_root if p.startswith("/var/lib/bootc-py/cache/summaries/")
            and p.endswith(".json")], sorted(p for p in live_root if "bootc-py" in p)
    # dracut ran beside mksquashfs, on an overlay of the tree: nothing it wrote is in the root.
    assert not [p for p in live_root if "95bootc-py-live" in p or p.startswith(
        ("/tmp/", "/var/tmp/dracut"))], live_root
    assert sorted(p.name for p in out.iterdir()) == ["bootiso", "manifest.json", "squashfs.img"]
    (out / "squashfs.img").unlink()
    return iso


def squashfs_listing(iso: Path, dest: Path) -> set[str]:
    """The paths in the ISO's live root (LiveOS/squashfs.img, extracted to `dest`)."""
    subprocess.run(["xorriso", "-osirrox", "on", "-indev", str(iso), "-extract",
                    "/LiveOS/squashfs.img", str(dest)], check=True, capture_output=True)
    listing = subprocess.run(["unsquashfs", "-l", "-d", "", str(dest)], check=True,
                             capture_output=True, text=True).stdout
    return {line for line in listing.splitlines() if line.startswith("/")}


def assert_installed(facts: dict[str, Any], sample_images: SampleImages, *,
                     lvm: bool) -> None:
    assert facts["variant"] == "v1"
    assert facts["failed_units"] == [], facts["failed_units"]
    assert "/ostree/deploy/default/deploy/" in facts["mounts"]["/"]["source"]
    assert facts["mounts"]["/sysroot"]["source"].startswith("/dev/mapper/") == lvm
    assert "console=ttyS0,115200n8" in facts["cmdline"]  # build's --karg
    status = facts["bootc_py"]
    assert status and status["ok"], status
    booted = status["status"]["status"]["booted"]
    assert booted["image"]["image"] == {"image": TARGET, "transport": "registry"}
    assert booted["image"]["imageDigest"] == sample_images.manifest_digest("v1")


def assert_live_install(serial: str, disk: str, kickstart: str, finish: str) -> None:
    assert "bootc-py live installer: starting" in serial, serial[-4000:]
    assert f"kickstart: {kickstart}" in serial
    assert f"bootc-py live installer: installed onto {disk}" in serial, serial[-4000:]
    assert ": kept from an earlier scan" in serial  # the summary the build put in the live root
    assert f"bootc-py live installer: {finish}" in serial


def untouched(disk: Path) -> bool:
    """Nothing was ever written to the qcow2 `disk`."""
    mapping = json.loads(subprocess.run(["qemu-img", "map", "--output=json", str(disk)],
                                        check=True, capture_output=True, text=True).stdout)
    return not any(extent["data"] for extent in mapping)


@pytest.mark.timeout(3600)
def test_iso_as_cd_under_bios_asks_which_of_two_empty_disks_and_the_disk_boots(
        sample_images: SampleImages, boot_check: Callable[..., dict[str, Any]],
        tmp_path: Path) -> None:
    """No kickstart and two empty disks: the console asks which to erase (the test types the
    answer on the serial port), installs that one, leaves the other alone, and ejects the CD
    as the built-in kickstart's `reboot --eject` says."""
    iso = build_iso(sample_images, tmp_path / "out")
    spare, disk = tmp_path / "spare.qcow2", tmp_path / "target.qcow2"
    for d in (spare, disk):
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(d), "12G"], check=True)
    with VM(drives=[Drive(spare, serial="spare"), Drive(disk, serial="target")], cdrom=iso,
            boot="cdrom", firmware="bios", memory_mb=3072, name="iso-cd",
            workdir=tmp_path / "iso-cd", serial_input=True, pause_at_shutdown=True) as vm:
        menu = vm.wait_for(r"(\d)\) /dev/vdb  ([^\r\n]*)\r?\n", LIVE_INSTALL_TIMEOUT,
                           "the live installer asking which disk to erase")
        vm.wait_for(r"or q to stop without installing: ", 60)
        assert "/dev/vda  12G" in vm.serial_text()  # both disks offered, the medium not
        vm.send_serial(f"{menu.group(1)}\n")
        vm.wait_for(r"Erase everything on /dev/vdb \(12G[^)]*\) and install\? ", 120,
                    "the installer asking to confirm the wipe")
        vm.send_serial("yes\n")
        vm.wait_shutdown(timeout=LIVE_INSTALL_TIMEOUT)
        serial = vm.serial_text()
        # `reboot --eject` (the built-in kickstart): the guest opened the drive's tray at the
        # very end of its shutdown (qemu reports it as it happens; the reset that follows
        # closes qemu's tray again, which a real drive does not do).
        trays = [e["data"]["tray-open"] for e in vm.pull_events()
                 if e["event"] == "DEVICE_TRAY_MOVED" and e["data"].get("device") == "cd0"]
    assert trays[:1] == [True], (trays, serial[-3000:])
    assert "bootc-py: ejected /dev/sr0" in serial, serial[-3000:]
    assert "target" in menu.group(2), menu.group(0)  # the disk's serial, as lsblk shows it
    assert "/dev/sr0" not in serial.split("several empty disks")[1].split("Disk [")[0]
    assert_live_install(serial, "/dev/vdb", "built-in default", "reboot")
    assert untouched(spare)
    assert_installed(boot_check(Drive(disk), firmware="bios", name="cd-installed", last=True),
                     sample_images, lvm=True)


# Embedded at build time (--kickstart): no payload line, so the ISO's own image is installed.
KICKSTART = """\
zerombr
clearpart --all --initlabel
autopart --type=plain --noswap
group --name ops --gid 2000
%post --erroronfail
echo from-the-iso > /etc/iso-post-marker
%end
poweroff
"""
# bootc-image-builder's build configuration beside it: its user (in the kickstart's group),
# key and kernel argument are applied with the kickstart (bootc-image-builder refuses the
# pair: its #528), its ISO ids label the medium.
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIConfigTomlUserKeyOfTheIsoTest0 core@bootc-py"
CONFIG = f"""\
[[customizations.user]]
name = "core"
groups = ["ops"]
uid = 1001
key = "{KEY}"

[customizations.kernel]
append = "bootc-py.from-config=1"

[customizations.installer]
unattended = true

[customizations.iso]
volume_id = "BOOTC-PY-USB"
publisher = "bootc-py tests"
"""
PROBE = "cat /etc/iso-post-marker; id core; cat /var/home/core/.ssh/authorized_keys\n"


@pytest.mark.timeout(3600)
def test_iso_as_usb_stick_under_uefi_with_its_kickstart_is_never_the_target(
        sample_images: SampleImages, boot_check: Callable[..., dict[str, Any]],
        tmp_path: Path) -> None:
    ks = tmp_path / "ks.cfg"
    ks.write_text(KICKSTART)
    config = tmp_path / "config.toml"
    config.write_text(CONFIG)
    iso = build_iso(sample_images, tmp_path / "out", "--kickstart", str(ks), "--config",
                    str(config))
    pvd = subprocess.run(["xorriso", "-indev", str(iso), "-pvd_info"], check=True,
                         capture_output=True, text=True).stdout
    assert "Volume Id    : BOOTC-PY-USB" in pvd and "Publisher Id : BOOTC-PY TESTS" in pvd, pvd
    subprocess.run(["xorriso", "-osirrox", "on", "-indev", str(iso), "-extract",
                    "/bootc-py/install.json", str(tmp_path / "install.json")], check=True,
                   capture_output=True)
    # installer.unattended: the live installer never asks, whatever disks it finds
    assert json.loads((tmp_path / "install.json").read_text())["unattended"] is True
    disk = tmp_path / "target.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "12G"], check=True)
    # The stick is the first disk (vda), so the only empty disk is the second (vdb).
    stick = Drive(iso, format="raw", serial="usbstick", readonly=True)
    with VM(drives=[stick, Drive(disk, serial="target")], boot="disk", firmware="uefi",
            memory_mb=3072, name="iso-usb", workdir=tmp_path / "iso-usb") as vm:
        vm.wait_exit(timeout=LIVE_INSTALL_TIMEOUT)
        assert_live_install(vm.serial_text(), "/dev/vdb",
                            "/run/initramfs/live/bootc-py/ks.cfg", "poweroff")
    facts = boot_check(Drive(disk), firmware="uefi", name="usb-installed", script=PROBE,
                       last=True)
    assert_installed(facts, sample_images, lvm=False)
    script = facts["script"]
    assert script is not None and script["rc"] == 0, script
    assert script["stdout"].splitlines() == [
        "from-the-iso", "uid=1001(core) gid=1001(core) groups=1001(core),2000(ops)", KEY]
    assert "bootc-py.from-config=1" in facts["cmdline"].split()


FAILING_KICKSTART = """\
zerombr
clearpart --all --initlabel
autopart --type=plain
%pre --erroronfail
echo "refusing on purpose" >&2
exit 3
%end
reboot
"""


@pytest.mark.timeout(3600)
def test_a_failing_kickstart_from_inst_ks_hd_says_why_and_the_live_system_stays_up(
        sample_images: SampleImages, tmp_path: Path) -> None:
    # The ISO's kernel started directly, to give it inst.ks= (what an operator types at the
    # menu): the kickstart on a second disk's ext4 filesystem labelled KS.
    iso = build_iso(sample_images, tmp_path / "out")
    files = tmp_path / "ks"
    files.mkdir()
    (files / "ks.cfg").write_text(FAILING_KICKSTART)
    ks_disk = tmp_path / "ks.img"
    subprocess.run(["mkfs.ext4", "-q", "-L", "KS", "-d", str(files), str(ks_disk), "16M"],
                   check=True)
    for name in ("vmlinuz", "initrd.img"):
        subprocess.run(["xorriso", "-osirrox", "on", "-indev", str(iso), "-extract",
                        f"/boot/{name}", str(tmp_path / name)], check=True,
                       capture_output=True)
    disk = tmp_path / "target.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "12G"], check=True)
    append = ("root=live:CDLABEL=BOOTC-PY-INSTALL rd.live.image rd.live.overlay.overlayfs=1 "
              "console=ttyS0,115200n8 bootc-py.live-install inst.ks=hd:LABEL=KS:/ks.cfg")
    with VM(drives=[Drive(disk, serial="target"), Drive(ks_disk, format="raw", serial="ks")],
            cdrom=iso, kernel=tmp_path / "vmlinuz", initrd=tmp_path / "initrd.img",
            append=append, firmware="bios", memory_mb=3072, name="iso-ks-fails",
            workdir=tmp_path / "iso-ks-fails") as vm:
        vm.wait_for(r"bootc-py live installer: failed: ", LIVE_INSTALL_TIMEOUT,
                    "the live installer reporting the failed kickstart")
        # the console was the installer's until then; now a getty offers a shell
        vm.wait_for(r"login: ", 180, "a login prompt after the failed install")
        time.sleep(10)
        assert vm.running(), vm.serial_tail(40)  # no reboot, no power-off: the system stays up
        serial = vm.serial_text()
    assert "kickstart: /tmp/bootc-py-ks-" in serial  # read from the KS disk, mounted read-only
    assert "failed (exit 3, --erroronfail): refusing on purpose" in serial, serial[-3000:]
    assert "bootc-py live installer: reboot" not in serial
    assert untouched(disk)  # %pre runs before any disk is touched: the target is still empty
