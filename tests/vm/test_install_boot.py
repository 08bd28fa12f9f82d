"""The proof of the install: disks made by bootc-py boot under qemu, and the guest says so.

One install with GRUB for BIOS and UEFI (--via-loopback implies --generic-image), one with
systemd-boot, and a qcow2 from `bootc-py build`. Each boot is cold; the guest's check unit
reports what is mounted where, what is writable, the kernel command line, root's keys and
`bootc-py status --json`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from vmharness import Drive
from vmharness.samples import SampleImages

BOOTC_PY = Path(sys.executable).parent / "bootc-py"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBootcPyVmTestKeyOnlyNotReal vmtest@bootc-py"
KARGS = ("console=ttyS0,115200n8", "bootc_py.test=install")
FIRMWARE_PROBE = "test -d /sys/firmware/efi && echo firmware=uefi || echo firmware=bios\n"
WRITE = (FIRMWARE_PROBE + "echo from-first-boot > /etc/bootc-py-persist\n"
         "mkdir -p /var/lib/bootc-py-test && echo from-first-boot > /var/lib/bootc-py-test/x\n")
READ = "cat /etc/bootc-py-persist /var/lib/bootc-py-test/x\n"
STEADY = "echo steady-state=$(systemctl show -P Result bootc-py-steady-state.service)\n"

BootCheck = Callable[..., dict[str, Any]]


def bootc_py(*args: str) -> None:
    res = subprocess.run([str(BOOTC_PY), *args], capture_output=True, text=True, timeout=1800)
    assert res.returncode == 0, f"bootc-py {' '.join(args)} failed:\n{res.stderr[-3000:]}"


def install_args(work: Path, *extra: str) -> tuple[str, ...]:
    keys = work / "keys.pub"
    keys.write_text(KEY + "\n")
    return ("--target-imgref", "docker://127.0.0.1:5000/bootc-py-fixture:v1",
            "--root-ssh-authorized-keys", str(keys), *[f"--karg={k}" for k in KARGS], *extra)


# Installed once per session (conftest's installed_base): every test boots an overlay.
@pytest.fixture(scope="session")
def grub_disk(installed_base: Callable[..., Path],
              tmp_path_factory: pytest.TempPathFactory) -> Path:
    return installed_base(*install_args(tmp_path_factory.mktemp("grub")))


@pytest.fixture(scope="session")
def sdboot_disk(installed_base: Callable[..., Path],
                tmp_path_factory: pytest.TempPathFactory) -> Path:
    return installed_base(*install_args(tmp_path_factory.mktemp("sdboot"),
                                        "--bootloader=systemd"))


def overlay(base: Path, path: Path) -> Path:
    """A qcow2 over the installed disk: each test boots its own copy, writes persist in it."""
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(base),
                    str(path)], check=True)
    return path


def assert_installed(facts: dict[str, Any], sample_images: SampleImages) -> None:
    """What every installed disk must show once booted."""
    assert facts["variant"] == "v1"
    assert facts["failed_units"] == []
    mounts = facts["mounts"]
    root = mounts["/"]
    assert "/ostree/deploy/default/deploy/" in root["source"]  # / is the deployment
    assert mounts["/usr"]["ro"] and not mounts["/usr"]["writable"]
    assert mounts["/etc"]["writable"]
    assert mounts["/var"]["writable"] and mounts["/var"]["source"].endswith(
        "[/ostree/deploy/default/var]")
    assert mounts["/boot"]["fstype"] == "ext4"
    assert facts["ostree"]["booted"]
    cmdline = facts["cmdline"].split()
    for karg in KARGS:
        assert karg in cmdline
    assert any(k.startswith("root=UUID=") for k in cmdline) and "rw" in cmdline
    root_user = next(u for u in facts["users"] if u["name"] == "root")
    assert root_user["home_real"] == "/var/roothome"
    assert KEY in root_user["authorized_keys"]
    status = facts["bootc_py"]
    assert status and status["ok"], status
    booted = status["status"]["status"]["booted"]
    assert booted["image"]["image"] == {"image": "127.0.0.1:5000/bootc-py-fixture:v1",
                                        "transport": "registry"}
    assert booted["image"]["imageDigest"] == sample_images.manifest_digest("v1")
    assert booted["image"]["version"] == sample_images.version("v1")


def script_out(facts: dict[str, Any]) -> str:
    script = facts["script"]
    assert script is not None and script["rc"] == 0, script
    return str(script["stdout"])


def test_uefi_grub_boots_and_keeps_etc_and_var(grub_disk: Path, sample_images: SampleImages,
                                                boot_check: BootCheck, tmp_path: Path) -> None:
    disk = overlay(grub_disk, tmp_path / "uefi-grub.qcow2")
    first = boot_check(Drive(disk), firmware="uefi", script=WRITE + STEADY, name="uefi-grub")
    assert_installed(first, sample_images)
    out = script_out(first)
    assert "firmware=uefi" in out
    # The default strategy ("immediate") holds no FleetLock slot: no python for it at boot.
    assert "steady-state=exec-condition" in out.split(), out
    assert any(k.startswith("BOOT_IMAGE=") for k in first["cmdline"].split())  # GRUB booted
    second = boot_check(Drive(disk), firmware="uefi", script=READ, name="uefi-grub-again",
                        last=True)
    assert script_out(second).split() == ["from-first-boot", "from-first-boot"]
    assert second["machine_id"] == first["machine_id"]


def test_qcow2_from_build_boots(sample_images: SampleImages, boot_check: BootCheck,
                                tmp_path: Path) -> None:
    out = tmp_path / "out"
    keys = tmp_path / "keys.pub"
    keys.write_text(KEY + "\n")
    bootc_py("build", "--type", "qcow2", "--output", str(out),
             "--target-imgref", "docker://127.0.0.1:5000/bootc-py-fixture:v1",
             "--root-ssh-authorized-keys", str(keys), *[f"--karg={k}" for k in KARGS],
             sample_images.ref("v1"))
    manifest = json.loads((out / "manifest.json").read_text())
    assert [a["path"] for a in manifest["artifacts"]] == ["qcow2/disk.qcow2"]
    assert not (out / "image").exists()  # the intermediate raw disk is not left behind
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json",
                                      str(out / "qcow2/disk.qcow2")], check=True,
                                     capture_output=True, text=True).stdout)
    assert info["format"] == "qcow2"
    assert info["actual-size"] < info["virtual-size"] / 2  # sparse: no wasted bytes
    facts = boot_check(Drive(out / "qcow2/disk.qcow2"), firmware="uefi", name="qcow2",
                       last=True)
    assert_installed(facts, sample_images)


# Stage a second deployment of the booted commit, as an update would, then shut down: ostree
# writes its boot entries only at shutdown (ostree-finalize-staged), and bootc-py's
# bootloader-sync unit must carry them into grub.cfg / the ESP after that.
STAGE = """set -e
booted=$(ostree admin status | sed -n 's/^\\* default \\([0-9a-f]*\\)\\.\\([0-9]*\\)$/\\1.\\2/p')
ostree admin deploy --stage --os=default \
    --origin-file=/ostree/deploy/default/deploy/$booted.origin ${booted%.*}
ostree admin status
"""
GRUB_ENTRIES = "grep -c '^menuentry' /boot/grub/grub.cfg\n"
ESP_ENTRIES = "ls /boot/efi/loader/entries\n"


def assert_staged_then_booted(first: dict[str, Any], second: dict[str, Any]) -> None:
    assert "(staged)" in script_out(first)
    deployments = second["ostree"]["deployments"]
    assert len(deployments) == 2
    assert deployments[0]["booted"] and deployments[0]["serial"] == 1  # the staged one booted
    status = second["bootc_py"]["status"]["status"]
    assert status["booted"]["ostree"]["deploySerial"] == 1
    assert status["rollback"]["ostree"]["deploySerial"] == 0


def test_bios_grub_boots_then_follows_a_deployment_staged_at_shutdown(
        grub_disk: Path, sample_images: SampleImages, boot_check: BootCheck,
        tmp_path: Path) -> None:
    disk = overlay(grub_disk, tmp_path / "staged-grub.qcow2")
    # The first boot is the installed disk's first BIOS boot: the install's facts, then stage.
    probe = FIRMWARE_PROBE + "grep '^set timeout=' /boot/grub/grub.cfg\n"
    first = boot_check(Drive(disk), firmware="bios", script=probe + STAGE, name="bios-grub")
    assert_installed(first, sample_images)
    out = script_out(first)
    assert "firmware=bios" in out
    # The sample image's /usr/lib/bootc-py/install says bootloader-timeout = 0: no menu wait.
    assert "set timeout=0" in out.splitlines()
    second = boot_check(Drive(disk), firmware="bios", script=GRUB_ENTRIES,
                        name="staged-booted", last=True)
    assert_staged_then_booted(first, second)
    assert script_out(second).split() == ["2"]  # both deployments in grub.cfg


def test_uefi_systemd_boot_boots_then_follows_a_deployment_staged_at_shutdown(
        sdboot_disk: Path, sample_images: SampleImages, boot_check: BootCheck,
        tmp_path: Path) -> None:
    disk = overlay(sdboot_disk, tmp_path / "staged-sdboot.qcow2")
    # The first boot is the installed disk's first boot: the install's facts, then stage.
    probe = FIRMWARE_PROBE + ("ls /boot/efi/loader/entries /boot/efi/EFI/systemd\n"
                              "grep '^timeout' /boot/efi/loader/loader.conf\n")
    first = boot_check(Drive(disk), firmware="uefi", script=probe + STAGE, name="systemd-boot")
    assert_installed(first, sample_images)
    out = script_out(first)
    assert "firmware=uefi" in out and "systemd-bootx64.efi" in out
    assert "timeout 0" in out  # the image's bootloader-timeout = 0
    assert "ostree-1-default.conf" in out
    # systemd-boot passes no BOOT_IMAGE= (GRUB does): this boot did not come through GRUB.
    assert not any(k.startswith("BOOT_IMAGE=") for k in first["cmdline"].split())
    second = boot_check(Drive(disk), firmware="uefi", script=ESP_ENTRIES,
                        name="staged-booted", last=True)
    assert_staged_then_booted(first, second)
    assert {"ostree-1-default.conf", "ostree-2-default.conf"} <= set(script_out(second).split())
