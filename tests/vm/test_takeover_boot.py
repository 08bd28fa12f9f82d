"""Take over a running plain Debian machine (install to-existing-root), and factory-reset an
installed host (install reset), in qemu.

The plain disk is vm-fixtures' stock Debian (GRUB, ext4 root, cloud kernel; BIOS and UEFI).
Its bootc-py runs from a second disk that also holds the sample images' OCI layout: the
working tree's bootc_py (what the sample image vendors) on the plain system's python3.
Boots: 2 (BIOS takeover, first refused on a full root) + 2 (UEFI takeover with --cleanup) +
2 (reset; its second boot also refuses a takeover of itself and of a root on LVM over two
disks).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from vmharness import VM, Drive
from vmharness.samples import SampleImages

REPO = Path(__file__).resolve().parents[2]
# The takeover boot runs the install inside the TCG guest (importing the image into ostree
# there): minutes more than a plain boot's report; the guest's own script limit is 1200 s.
INSTALL_BOOT_TIMEOUT = 1500
ROOT_KEY = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBootcPyTakeoverTestKeyOfTheOldSystem0 "
            "admin@old-host")

TAKEOVER = """set -e
mkdir -p /root/.ssh
echo '{key}' > /root/.ssh/authorized_keys
chmod 700 /root/.ssh; chmod 600 /root/.ssh/authorized_keys
echo "the old system" > /etc/old-system-marker
mkdir -p /mnt/payload
mount LABEL=BPYPAYLOAD /mnt/payload
cat /etc/debian_version
ls /boot
{precheck}PYTHONPATH=/mnt/payload/py python3 -m bootc_py install to-existing-root {flags} \\
    --karg console=ttyS0,115200n8 --source-imgref oci:/mnt/payload/oci:v1 \\
    --cache-dir /mnt/payload/cache /
umount /mnt/payload
sync
echo took-over
"""

# Before the real takeover: the same command on a root filled to 64 MiB of free space is
# refused with the figures, and writes nothing (the pull goes to the payload disk's cache).
FULL_ROOT_REFUSED = """avail=$(df --output=avail -B1 / | tail -1)
fallocate -l $(( avail - 64 * 1024 * 1024 )) /var/tmp/bootc-py-fill
if PYTHONPATH=/mnt/payload/py python3 -m bootc_py install to-existing-root \\
    --acknowledge-destructive --source-imgref oci:/mnt/payload/oci:v1 \\
    --cache-dir /mnt/payload/cache / 2> /tmp/full.err; then
    echo "a full root was taken over"; exit 1
fi
sed 's/^/full-root: /' /tmp/full.err
[ ! -e /ostree ] && [ ! -e /boot/loader ] && echo "full-root: nothing written"
rm /var/tmp/bootc-py-fill
"""

AFTER = """echo "== marker"; cat /sysroot/etc/old-system-marker || true
echo "== sysroot"; ls -A /sysroot
echo "== boot"; ls /sysroot/boot
echo "== log"; cat /sysroot/ostree/bootc-py/destructive-cleanup.log 2>/dev/null || true
echo "== unit"; systemctl show -p Result -p ActiveState bootc-py-destructive-cleanup.service
"""


def _sections(stdout: str) -> dict[str, list[str]]:
    """The AFTER script's output by section ("== name" headers)."""
    found: dict[str, list[str]] = {}
    current = ""
    for line in stdout.splitlines():
        if line.startswith("== "):
            current = line[3:]
            found[current] = []
        elif current:
            found[current].append(line)
    return found


def _payload(sample_images: SampleImages, tmp_path: Path) -> Path:
    """An ext4 disk: py/bootc_py (the working tree's), oci/ (the sample layout), cache/."""
    tree = tmp_path / "payload"
    (tree / "py").mkdir(parents=True)
    shutil.copytree(REPO / "src/bootc_py", tree / "py/bootc_py",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    subprocess.run(["cp", "-al", str(sample_images.oci_dir), str(tree / "oci")], check=True)
    (tree / "cache").mkdir()
    disk = tmp_path / "payload.img"
    with open(disk, "wb") as f:
        f.truncate(3 << 30)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "BPYPAYLOAD", "-d", str(tree), str(disk)],
                   check=True)
    shutil.rmtree(tree)
    return disk


def _took_over(facts: dict[str, Any]) -> str:
    script = facts["script"]
    assert script["rc"] == 0, json.dumps(script)[-3000:]
    assert script["stdout"].rstrip().endswith("took-over")
    return str(script["stderr"])


def _root(facts: dict[str, Any]) -> dict[str, Any]:
    return next(u for u in facts["users"] if u["name"] == "root")


@pytest.mark.timeout(3600)
def test_takeover_bios_keeps_the_old_system_under_sysroot(
        sample_images: SampleImages, plain_disk: Callable[..., Path],
        boot_check: Callable[..., dict[str, Any]], tmp_path: Path) -> None:
    disk = plain_disk()
    payload = _payload(sample_images, tmp_path)
    old = boot_check(Drive(disk), Drive(payload), firmware="bios", name="plain-bios",
                     timeout=INSTALL_BOOT_TIMEOUT,
                     script=TAKEOVER.format(key=ROOT_KEY, flags="--acknowledge-destructive",
                                            precheck=FULL_ROOT_REFUSED))
    # The plain Debian disk boots under BIOS and reports (the check unit works on it).
    assert old["variant"] == "plain" and old["failed_units"] == [], old["failed_units"]
    full = [ln.removeprefix("full-root: ") for ln in old["script"]["stdout"].splitlines()
            if ln.startswith("full-root: ")]
    errors = [ln for ln in full if ln.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in "\n".join(full), full
    assert errors[0].startswith("error: not enough free space on / (/dev/"), errors
    assert " (the image unpacks to " in errors[0] and " is free" in errors[0], errors
    assert full[-1] == "nothing written", full
    assert old["mounts"]["/"]["fstype"] == "ext4" and not old["mounts"]["/usr"]["ro"]
    assert old["ostree"]["booted_deployment"] is None
    stderr = _took_over(old)
    assert "Waiting" not in stderr and "interrupt" not in stderr  # acknowledged: no pause

    new = boot_check(Drive(disk), firmware="bios", name="took-over-bios", script=AFTER,
                     last=True)
    assert new["variant"] == "v1", new.get("cmdline")
    assert "/ostree/deploy/default/deploy/" in new["mounts"]["/"]["source"]
    assert new["mounts"]["/usr"]["ro"] and new["mounts"]["/var"]["writable"]
    assert new["ostree"]["booted_deployment"] is not None
    assert new["failed_units"] == [], new["failed_units"]
    status = new["bootc_py"]["status"]["status"]["booted"]
    assert status["image"]["imageDigest"] == sample_images.manifest_digest("v1")
    # The old system's root key is root's key on the new one.
    assert _root(new)["authorized_keys"] == [ROOT_KEY]
    # The old system is readable under /sysroot: its /etc, /usr, its kernel in /boot.
    out = _sections(new["script"]["stdout"])
    assert out["marker"] == ["the old system"]
    assert {"usr", "etc", "var", "home", "ostree", "boot"} <= set(out["sysroot"])
    assert any(n.startswith("vmlinuz-") for n in out["boot"])
    assert any(n.startswith("initrd.img-") for n in out["boot"])
    assert "ostree" in out["boot"] and "loader" in out["boot"]


@pytest.mark.timeout(3600)
def test_takeover_uefi_with_cleanup_removes_the_old_files_once(
        sample_images: SampleImages, plain_disk: Callable[..., Path],
        boot_check: Callable[..., dict[str, Any]], tmp_path: Path) -> None:
    disk = plain_disk()
    payload = _payload(sample_images, tmp_path)
    old = boot_check(Drive(disk), Drive(payload), firmware="uefi", name="plain-uefi",
                     timeout=INSTALL_BOOT_TIMEOUT,
                     script=TAKEOVER.format(key=ROOT_KEY,
                                            flags="--acknowledge-destructive --cleanup",
                                            precheck=""))
    assert old["variant"] == "plain" and old["failed_units"] == [], old["failed_units"]
    assert old["mounts"]["/boot/efi"]["fstype"] == "vfat"
    _took_over(old)

    new = boot_check(Drive(disk), firmware="uefi", name="cleaned-uefi", last=True,
                     script=AFTER + "systemctl start bootc-py-destructive-cleanup.service\n"
                     "systemctl show -p ConditionResult bootc-py-destructive-cleanup.service\n")
    assert new["variant"] == "v1"
    assert "/ostree/deploy/default/deploy/" in new["mounts"]["/"]["source"]
    assert new["mounts"]["/usr"]["ro"]
    assert new["failed_units"] == [], new["failed_units"]
    assert _root(new)["authorized_keys"] == [ROOT_KEY]
    out = _sections(new["script"]["stdout"])
    # Only the new system's entries are left on the physical root and in /boot.
    assert out["marker"] == []
    assert set(out["sysroot"]) <= {"ostree", "boot", "lost+found", ".bootc-aleph.json"}, out
    assert "ostree" in out["sysroot"] and "boot" in out["sysroot"]
    assert not any(n.startswith(("vmlinuz-", "initrd.img-")) for n in out["boot"]), out
    log = "\n".join(out["log"])
    assert "removing /sysroot/usr" in log and "removing /sysroot/etc" in log
    assert "removing /boot/vmlinuz-" in log
    assert log.count("bootc-py destructive cleanup: done") == 1
    assert "Result=success" in out["unit"]
    # Started again by hand: the flag is gone, so its condition fails and nothing runs.
    assert "ConditionResult=no" in new["script"]["stdout"]
    status = new["bootc_py"]["status"]["status"]["booted"]
    assert status["image"]["imageDigest"] == sample_images.manifest_digest("v1")


RESET = """echo before-reset > /etc/bootc-py-reset-marker
mkdir -p /var/lib/bootc-py-reset && echo before-reset > /var/lib/bootc-py-reset/x
# --apply reboots into it (qemu -no-reboot ends there); the log on the console, where the
# test reads it (the check unit's report never comes: the reboot cuts it short).
bootc-py install reset --stateroot fresh --apply 2>&1 | tee /dev/console
"""
AFTER_RESET = """cat /etc/bootc-py-reset-marker 2>/dev/null || echo etc-is-fresh
cat /var/lib/bootc-py-reset/x 2>/dev/null || echo var-is-fresh
cat /sysroot/ostree/deploy/default/var/lib/bootc-py-reset/x
grep ^variant= /etc/bootc-py-fixture/variant.conf
bootc-py install to-existing-root --acknowledge-destructive --source-imgref oci:/none:v1 / \
    2>&1 | grep '^error: ' || true
# A root on one LVM volume over two disks (bootc's #481) is refused, before any image is read.
lvm=/dev/disk/by-id/virtio-bpy-lvm
pvcreate -qq $lvm-1 $lvm-2 && vgcreate -qq bpytwo $lvm-1 $lvm-2
lvcreate -qq -y -l 100%FREE -n root bpytwo && mkfs.ext4 -q /dev/bpytwo/root
mkdir -p /run/lvroot && mount /dev/bpytwo/root /run/lvroot
bootc-py install to-existing-root --acknowledge-destructive --source-imgref oci:/none:v1 \
    /run/lvroot 2>&1 | grep '^error: ' || true
ls -A /run/lvroot
umount /run/lvroot && vgchange -qq -an bpytwo
"""


@pytest.mark.timeout(3600)
def test_reset_boots_a_fresh_stateroot_and_keeps_the_old_as_rollback(
        sample_images: SampleImages, installed_disk: Callable[..., Path],
        boot_check: Callable[..., dict[str, Any]], vm_factory: Callable[..., VM],
        tmp_path: Path) -> None:
    disk = installed_disk("--karg=console=ttyS0,115200n8")
    lvm_disks = [tmp_path / f"lvm-{i}.raw" for i in (1, 2)]
    for f in lvm_disks:
        with open(f, "wb") as fh:
            fh.truncate(64 << 20)
    with vm_factory(drives=[Drive(disk)], firmware="bios", name="before-reset",
                    script=RESET) as vm:
        vm.wait_for(r"deploying \S+ into the new stateroot fresh", 900,
                    "install reset's deploy line")
        assert vm.wait_exit(300) == 0  # the guest rebooted by itself
        assert not re.search(r"^error: ", vm.serial_tail(80), re.M), vm.serial_tail(80)

    after = boot_check(Drive(disk), *(Drive(f, serial=f.stem.replace("lvm", "bpy-lvm"))
                                      for f in lvm_disks),
                       firmware="bios", name="after-reset", script=AFTER_RESET, last=True)
    assert "/ostree/deploy/fresh/deploy/" in after["mounts"]["/"]["source"]
    assert after["failed_units"] == [], after["failed_units"]
    deps = after["ostree"]["deployments"]
    assert [(d["stateroot"], d["booted"]) for d in deps] == [("fresh", True), ("default", False)]
    # ostree's own "(rollback)" mark is per stateroot (the booted one's older deployment), so
    # it marks neither here; bootc-py's status names the old stateroot's deployment (below).
    out = after["script"]["stdout"].splitlines()
    # /etc from the image (its own files, none of the old one's changes), /var new; the old
    # stateroot's /var is still there.
    assert out[:4] == ["etc-is-fresh", "var-is-fresh", "before-reset", "variant=v1"], out
    # A takeover of a host that is already an ostree system is refused before anything else.
    assert out[4].startswith("error: / is already an ostree system (found /"), out
    assert out[5] == ("error: the root filesystem at /run/lvroot is on the LVM logical volume "
                      "bpytwo-root, which spans 2 disks (/dev/vdb, /dev/vdc); bootc-py cannot "
                      "install a bootloader for a root spread over several disks"), out
    assert out[6:] == ["lost+found"], out  # nothing written
    assert after["mounts"]["/boot"]["fstype"] == "ext4"  # fstab carried: /boot mounted
    status = after["bootc_py"]["status"]["status"]
    assert status["booted"]["image"]["imageDigest"] == sample_images.manifest_digest("v1")
    assert status["rollback"]["image"]["imageDigest"] == sample_images.manifest_digest("v1")
    assert status["booted"]["ostree"]["stateroot"] == "fresh"
    assert status["rollback"]["ostree"]["stateroot"] == "default"
