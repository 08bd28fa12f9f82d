"""install to-disk onto a real (virtio) block device, from inside a running system.

This is the bare-metal path: no loop device, udev running in the guest, the target named by
its stable id, a used disk wiped with --wipe. The guest runs the sample image itself (its
bootc-py on Debian's python3) and installs the image from an OCI layout on a second disk; the
target disk then boots on its own.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vmharness import Drive
from vmharness.samples import DirectBootDisk, SampleImages

INSTALL = """set -e
mkdir -p /mnt/oci
mount -o ro LABEL=BPYOCI /mnt/oci
# A used disk: an old partition table and filesystem that --wipe must erase.
bootc-py install to-disk --source-imgref oci:/mnt/oci:v1 /dev/disk/by-id/virtio-target \
    && exit 3 || echo "refused without --wipe"
bootc-py install to-disk --wipe --source-imgref oci:/mnt/oci:v1 \
    --target-imgref docker://127.0.0.1:5000/bootc-py-fixture:v1 \
    --karg console=ttyS0,115200n8 /dev/disk/by-id/virtio-target
echo installed
"""


def test_install_onto_a_virtio_disk_from_a_running_system(
        sample_images: SampleImages, direct_boot_disk: Callable[[str], DirectBootDisk],
        boot_check: Callable[..., dict[str, Any]], tmp_path: Path) -> None:
    oci_disk = tmp_path / "oci.img"
    with open(oci_disk, "wb") as f:
        f.truncate(1 << 30)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "BPYOCI", "-d", str(sample_images.oci_dir),
                    str(oci_disk)], check=True)
    target = tmp_path / "target.raw"
    with open(target, "wb") as f:
        f.truncate(6 << 30)
    subprocess.run(["sgdisk", "-n", "1:0:+300M", "-t", "1:8300", str(target)], check=True,
                   capture_output=True)
    host = direct_boot_disk("v1")
    facts = boot_check(Drive(host.disk, snapshot=True), Drive(oci_disk, readonly=True),
                       Drive(target, serial="target"), firmware="bios", script=INSTALL,
                       name="installer", **host.vm_args())
    script = facts["script"]
    assert script["rc"] == 0, script
    assert "refused without --wipe" in script["stdout"]
    assert "--wipe" in script["stderr"]
    assert script["stdout"].rstrip().endswith("installed")

    # Installed from a BIOS-booted system without --generic-image: GRUB for BIOS only.
    booted = boot_check(Drive(target), firmware="bios", name="installed-target", last=True)
    assert booted["variant"] == "v1" and booted["failed_units"] == []
    assert "/ostree/deploy/default/deploy/" in booted["mounts"]["/"]["source"]
    assert booted["mounts"]["/usr"]["ro"] and booted["mounts"]["/var"]["writable"]
    status = booted["bootc_py"]["status"]["status"]["booted"]
    assert status["image"]["imageDigest"] == sample_images.manifest_digest("v1")
