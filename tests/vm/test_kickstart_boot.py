"""A kickstart-installed disk boots, and the guest shows each of the kickstart's effects."""

from __future__ import annotations

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

pytestmark = [pytest.mark.vm, pytest.mark.root]
BOOTC_PY = Path(sys.executable).parent / "bootc-py"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKickstartVmTestKeyNotReal core@bootc-py"
KS = """\
bootc --source-imgref {image} --target-imgref 127.0.0.1:5000/bootc-py-fixture:v1
zerombr
clearpart --all --initlabel
reqpart --add-boot
part / --size 3000 --grow --fstype xfs
part /var --size 1024 --fstype ext4
group --name ops --gid 2000
user --name core --groups ops --uid 1001
sshkey --username core "{key}"
network --hostname ks-vm
services --enabled systemd-networkd
bootloader --append "console=ttyS0,115200n8"
%post --erroronfail
echo from-post > /etc/ks-post-marker
%end
"""
PROBE = ("hostname; id core; cat /etc/ks-post-marker; cat /var/home/core/.ssh/authorized_keys;"
         " findmnt -no FSTYPE /var; systemctl is-enabled systemd-networkd\n")


def test_kickstart_install_boots_with_its_effects(
        sample_images: SampleImages, boot_check: Callable[..., dict[str, Any]],
        tmp_path: Path) -> None:
    ks = tmp_path / "ks.cfg"
    ks.write_text(KS.format(image=sample_images.ref("v1"), key=KEY))
    disk = tmp_path / "disk.raw"
    res = subprocess.run([str(BOOTC_PY), "install", "kickstart", "--via-loopback", str(disk),
                          "--disk-size", "8G", str(ks)], capture_output=True, text=True,
                         timeout=1800)
    assert res.returncode == 0, res.stderr[-3000:]
    facts = boot_check(Drive(disk), firmware="uefi", script=PROBE, name="kickstart", last=True)
    assert facts["failed_units"] == []
    script = facts["script"]
    assert script is not None and script["rc"] == 0, script
    assert script["stdout"].splitlines() == [
        "ks-vm", "uid=1001(core) gid=1001(core) groups=1001(core),2000(ops)", "from-post",
        KEY, "ext4", "enabled"]


# LVM is proven here, not on the host: the host kernel has no device-mapper. A booted sample
# system (dm_mod, lvm2, udev) installs `--via-loopback` into a disk image file on its scratch
# disk (an ext4 filesystem) from an OCI layout on a third disk; after the install no volume
# group is active and no loop device is left; the host then boots that file alone.
LVM_KS = """\
bootc --source-imgref oci:/mnt/oci:v1 --target-imgref 127.0.0.1:5000/bootc-py-fixture:v1
zerombr
clearpart --all --initlabel
reqpart --add-boot
part pv.01 --size 4000 --grow
volgroup ksvg pv.01
logvol / --vgname ksvg --name root --size 3500 --grow --fstype xfs
logvol /var/srv --vgname ksvg --name srv --size 128 --fstype ext4
group --name ops --gid 2000
user --name core --groups ops,adm --uid 1001
sshkey --username core "{key}"
network --hostname ks-lvm
services --enabled systemd-networkd --disabled remote-fs.target
bootloader --append "console=ttyS0,115200n8" --timeout 1
%post --erroronfail
echo from-post > /etc/ks-post-marker
%end
"""
GUEST_INSTALL = """set -e
mkdir -p /mnt/oci
mount -o ro LABEL=BPYOCI /mnt/oci
mkdir -p /mnt/scratch
mount LABEL=BPYSCRATCH /mnt/scratch
cat > /tmp/ks.cfg <<'KS'
{ks}KS
bootc-py install kickstart --via-loopback /mnt/scratch/disk.raw --disk-size 8G /tmp/ks.cfg
echo "mapper: $(ls /dev/mapper | tr '\\n' ' ')"
echo "loops: $(losetup -n -O NAME,BACK-FILE | tr '\\n' ' ')"
umount /mnt/scratch
"""
LVM_PROBE = ("hostname; id core; cat /etc/ks-post-marker; cat /var/home/core/.ssh/authorized_keys;"
             " findmnt -no SOURCE,FSTYPE /sysroot; findmnt -no SOURCE,FSTYPE /var/srv;"
             " systemctl is-enabled systemd-networkd; systemctl is-enabled remote-fs.target;"
             " grep -o 'rd.lvm.lv=[^ ]*' /proc/cmdline; grep '^set timeout' /boot/grub/grub.cfg\n")


@pytest.mark.timeout(3600)
def test_lvm_kickstart_via_loopback_in_a_guest_boots(
        sample_images: SampleImages, installed_disk: Callable[..., Path],
        boot_check: Callable[..., dict[str, Any]], tmp_path: Path) -> None:
    oci_disk = tmp_path / "oci.img"
    with open(oci_disk, "wb") as f:
        f.truncate(1 << 30)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "BPYOCI", "-d", str(sample_images.oci_dir),
                    str(oci_disk)], check=True)
    scratch = tmp_path / "scratch.raw"
    with open(scratch, "wb") as f:
        f.truncate(10 << 30)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "BPYSCRATCH", str(scratch)], check=True)
    installer = installed_disk("--karg=console=ttyS0,115200n8")
    script = GUEST_INSTALL.format(ks=LVM_KS.format(key=KEY))
    facts = boot_check(Drive(installer), Drive(oci_disk, readonly=True), Drive(scratch),
                       firmware="uefi", script=script,
                       name="ks-installer", timeout=1500)  # the install runs in the guest
    run = facts["script"]
    assert run is not None and run["rc"] == 0, run
    out = run["stdout"].splitlines()
    # The volume group is deactivated and the loop device detached after the install.
    assert out[-2:] == ["mapper: control ", "loops: "], run
    assert "Installed oci:/mnt/oci:v1" in run["stdout"]

    mnt = tmp_path / "scratch"
    with LoopDevice(scratch) as loop, Mount(loop.path, mnt):
        booted = boot_check(Drive(mnt / "disk.raw"), firmware="uefi", script=LVM_PROBE,
                            name="ks-lvm", last=True)
    assert booted["variant"] == "v1" and booted["failed_units"] == []
    assert booted["mounts"]["/"]["source"].startswith("/dev/mapper/ksvg-root[/ostree/deploy/")
    probe = booted["script"]
    assert probe is not None and probe["rc"] == 0, probe
    assert probe["stdout"].splitlines() == [
        "ks-lvm", "uid=1001(core) gid=1001(core) groups=1001(core),4(adm),2000(ops)",
        "from-post", KEY, "/dev/mapper/ksvg-root xfs", "/dev/mapper/ksvg-srv ext4",
        "enabled", "disabled", "rd.lvm.lv=ksvg/root", "set timeout=1"]
