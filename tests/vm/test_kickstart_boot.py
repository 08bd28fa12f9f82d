"""A kickstart-installed disk boots, and the guest shows each of the kickstart's effects."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

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
    facts = boot_check(Drive(disk), firmware="uefi", script=PROBE, name="kickstart")
    assert facts["failed_units"] == []
    script = facts["script"]
    assert script is not None and script["rc"] == 0, script
    assert script["stdout"].splitlines() == [
        "ks-vm", "uid=1001(core) gid=1001(core) groups=1001(core),2000(ops)", "from-post",
        KEY, "ext4", "enabled"]
