"""install to-disk --via-loopback with real loop devices, mkfs, ostree, GRUB and mtools."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from synthetic import SyntheticImages, run_cli

from bootc_py.disk.esp import Esp
from bootc_py.disk.loop import LoopDevice
from bootc_py.disk.mount import Mount

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBootcPyTestKeyOnly test@bootc-py\n"


@contextmanager
def mounted(disk: Path) -> Iterator[tuple[Path, Path]]:
    """(loop device, root mount with /boot mounted) of an installed disk image."""
    with ExitStack() as stack:
        loop = stack.enter_context(LoopDevice(disk))
        mnt = Path(stack.enter_context(_tmpdir()))
        stack.enter_context(Mount(loop.partition(4), mnt))
        stack.enter_context(Mount(loop.partition(3), mnt / "boot"))
        yield loop.path, mnt


@contextmanager
def _tmpdir() -> Iterator[str]:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="bootc-py-test-") as d:
        yield d


def sh(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def installed(synthetic: SyntheticImages, tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("install")
    keys = work / "keys.pub"
    keys.write_text(KEY)
    disk = work / "disk.raw"
    res = run_cli("install", "to-disk", "--via-loopback", "--disk-size", "4G",
                  "--source-imgref", synthetic.ref("v1"), "--cache-dir", str(synthetic.cache),
                  "--target-imgref", "docker://127.0.0.1:5000/syn:1",
                  "--karg", "console=tty0", "--karg", "console=ttyS0,115200n8",
                  "--root-ssh-authorized-keys", str(keys), str(disk))
    assert res.returncode == 0, res.stderr
    assert "Installed oci:" in res.stdout
    return disk


def test_partitions_as_planned(installed: Path) -> None:
    table = sh("sgdisk", "-p", str(installed))
    assert "EF02" in table and "EF00" in table and "8300" in table and "8304" in table
    info = json.loads(sh("sfdisk", "--json", str(installed)))["partitiontable"]
    parts = info["partitions"]
    assert [p["name"] for p in parts] == ["BIOS-BOOT", "EFI-SYSTEM", "boot", "root"]
    assert all(p["start"] % 2048 == 0 for p in parts)  # 1 MiB aligned
    assert parts[3]["type"] == "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"
    with LoopDevice(installed) as loop:
        fstypes = [sh("blkid", "-s", "TYPE", "-o", "value", str(loop.partition(n))).strip()
                   for n in (2, 3, 4)]
        labels = [sh("blkid", "-s", "LABEL", "-o", "value", str(loop.partition(n))).strip()
                  for n in (2, 3, 4)]
    assert fstypes == ["vfat", "ext4", "xfs"]
    assert labels == ["EFI-SYSTEM", "boot", "root"]


def test_sysroot_deployment_entry_origin(installed: Path, synthetic: SyntheticImages) -> None:
    with mounted(installed) as (loop, mnt):
        root_uuid = sh("blkid", "-s", "UUID", "-o", "value", f"{loop}p4").strip()
        boot_uuid = sh("blkid", "-s", "UUID", "-o", "value", f"{loop}p3").strip()
        esp_uuid = sh("blkid", "-s", "UUID", "-o", "value", f"{loop}p2").strip()
        assert (mnt / "ostree/repo/config").is_file()
        assert "mode=bare" in (mnt / "ostree/repo/config").read_text()
        deployments = list((mnt / "ostree/deploy/default/deploy").glob("*.0"))
        assert len(deployments) == 1
        dep = deployments[0]
        assert dep.stat().st_mode & 0o7777 == 0o755  # services running as users need it
        assert (dep / "usr").stat().st_mode & 0o7777 == 0o755
        # The image content, in ostree layout, with the top layer's whiteout applied.
        assert (dep / "usr/share/syn/variant").read_text() == "v1\n"
        assert (dep / "usr/etc/os-release").exists()
        assert not (dep / "usr/etc/hostname").exists()
        assert os.readlink(dep / "root") == "var/roothome"
        # The BLS entry: root=UUID, rw, install config, kargs.d, then --karg, in order.
        entries = list((mnt / "boot/loader/entries").glob("*.conf"))
        assert len(entries) == 1
        options = next(line for line in entries[0].read_text().splitlines()
                       if line.startswith("options "))
        assert options.startswith(f"options root=UUID={root_uuid} rw syn.install=1 "
                                  "syn.kargsd=1 console=tty0 console=ttyS0,115200n8 ostree=")
        # Origin: where updates come from; the aleph: what was installed.
        origin = Path(f"{dep}.origin").read_text()
        assert "container-image-reference=ostree-unverified-registry:127.0.0.1:5000/syn:1" \
            in origin
        aleph = json.loads((mnt / ".bootc-aleph.json").read_text())
        assert aleph["kernel"] == "6.1.0-test-amd64"
        assert aleph["digest"] == synthetic.manifest_digest("v1")
        assert aleph["target-image"] == "docker://127.0.0.1:5000/syn:1"
        # Per-machine state: fstab, seeded /var, root's key.
        fstab = (dep / "etc/fstab").read_text()
        assert f"UUID={boot_uuid} /boot ext4" in fstab
        assert f"UUID={esp_uuid} /boot/efi vfat" in fstab
        var = mnt / "ostree/deploy/default/var"
        assert (var / "cache/app/seed").read_text() == "seeded from the image\n"
        assert (var / "roothome/.profile").exists()
        key = var / "roothome/.ssh/authorized_keys"
        assert key.read_text() == KEY
        assert key.stat().st_mode & 0o777 == 0o600
        # GRUB: a config generated from the entry, BIOS modules from the image on /boot.
        grub_cfg = (mnt / "boot/grub/grub.cfg").read_text()
        assert f"search --no-floppy --fs-uuid --set=root {boot_uuid}" in grub_cfg
        assert "menuentry 'Synthetic OS 1.0 (ostree:0)'" in grub_cfg
        assert (mnt / "boot/grub/i386-pc/normal.mod").is_file()
        setup = json.loads((mnt / "boot/bootc-py/bootloader.json").read_text())
        assert setup["grub_bios"] and setup["grub_efi"] and not setup["systemd_boot"]
    # GRUB's boot code in the MBR, the EFI binary on the (never mounted) ESP.
    with open(installed, "rb") as f:
        assert b"GRUB" in f.read(512)
    with LoopDevice(installed) as loop:
        esp = Esp(loop.partition(2))
        assert esp.read("EFI/BOOT/BOOTX64.EFI")[:2] == b"MZ"


def test_status_reads_the_offline_sysroot(installed: Path, synthetic: SyntheticImages) -> None:
    with mounted(installed) as (_, mnt):
        res = run_cli("status", "--json", "--sysroot", str(mnt))
        assert res.returncode == 0, res.stderr
        status = json.loads(res.stdout)
        assert status["apiVersion"] == "org.containers.bootc/v1"
        assert status["spec"]["image"] == {"image": "127.0.0.1:5000/syn:1",
                                           "transport": "registry"}
        dep = status["status"]["deployments"][0]
        assert dep["image"]["imageDigest"] == synthetic.manifest_digest("v1")
        assert dep["image"]["version"] == "1.0"
        assert dep["ostree"]["stateroot"] == "default"
        human = run_cli("status", "--format", "humanreadable", "--sysroot", str(mnt)).stdout
        assert "Default image: docker://127.0.0.1:5000/syn:1" in human
        # Not a terminal: YAML, as bootc does.
        assert run_cli("status", "--sysroot", str(mnt)).stdout.startswith(
            "apiVersion: org.containers.bootc/v1\nkind: BootcHost\n")
