"""The sample bootable images (vm-fixtures/build-image): layers, labels, what the tree holds,
and that bootc-py and its Python libraries run inside it (chroot)."""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fixture_image.bootclayer import enable_links
from fixture_image.recipe import BOOTC_PY_SRC
from testlib import require_root, require_tool
from vmharness.disks import Rootfs
from vmharness.initramfs import list_files
from vmharness.samples import SampleImages, build_samples

SIZE_LIMIT = 520 * 1000 * 1000  # 500 MB until pykickstart was vendored for the installer


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> SampleImages:
    require_root()
    require_tool("mmdebstrap", "umoci", "skopeo")
    return build_samples(tmp_path_factory.mktemp("fixture-images") / "oci")


@pytest.fixture(scope="module")
def rootfs(samples: SampleImages, tmp_path_factory: pytest.TempPathFactory
           ) -> Callable[[str], Rootfs]:
    work = tmp_path_factory.mktemp("fixture-rootfs")
    return lambda variant="v1": samples.rootfs(variant, work)


def chroot(tree: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["chroot", str(tree), *argv], capture_output=True, text=True,
                          env={"PATH": "/usr/sbin:/usr/bin", "LANG": "C.UTF-8"}, timeout=300,
                          check=False)


def tree_bytes(tree: Path) -> int:
    return sum((Path(d) / f).lstat().st_size for d, _, files in os.walk(tree) for f in files)


def test_three_layers_v2_and_broken_differ_only_on_top(samples: SampleImages) -> None:
    v1, v2, broken = (samples.layer_digests(v) for v in ("v1", "v2", "broken"))
    assert len(v1) == len(v2) == len(broken) == 3
    assert v1[:2] == v2[:2] == broken[:2]
    assert len({v1[2], v2[2], broken[2]}) == 3
    small = samples.manifest("v1")["layers"][2]["size"]
    assert small < 4096, "the variant layer should be tiny"


@pytest.mark.parametrize("variant,version", [("v1", "1"), ("v2", "2"), ("broken", "3")])
def test_labels_as_skopeo_reads_them(samples: SampleImages, variant: str, version: str) -> None:
    out = subprocess.run(["skopeo", "inspect", "--config", samples.ref(variant)],
                         capture_output=True, text=True, check=True).stdout
    labels = json.loads(out)["config"]["Labels"]
    assert labels["containers.bootc"] == "1"
    assert labels["ostree.bootable"] == "1"
    assert labels["org.opencontainers.image.version"] == version == samples.version(variant)


def test_exactly_one_kernel_with_its_initramfs_and_an_empty_boot(
        rootfs: Callable[[str], Rootfs]) -> None:
    tree = rootfs("v1")
    kvers = os.listdir(tree.path / "usr/lib/modules")
    assert kvers == [tree.kver]
    assert tree.vmlinuz.stat().st_size > 4_000_000
    assert tree.initramfs.stat().st_size > 4_000_000
    assert list((tree.path / "boot").iterdir()) == []
    assert not (tree.path / "vmlinuz").exists() and not (tree.path / "initrd.img").exists()


def test_initramfs_holds_ostree_prepare_root(rootfs: Callable[[str], Rootfs]) -> None:
    files = set(list_files(rootfs("v1").initramfs))
    assert "usr/lib/ostree/ostree-prepare-root" in files
    assert "usr/lib/systemd/system/ostree-prepare-root.service" in files
    assert any(f.endswith("/virtio_blk.ko") or f.endswith("/virtio_blk.ko.xz") for f in files)


def test_bootloader_payload_and_install_tools(rootfs: Callable[[str], Rootfs]) -> None:
    t = rootfs("v1").path
    for path in ("usr/lib/grub/i386-pc/boot.img", "usr/lib/grub/i386-pc/kernel.img",
                 "usr/lib/grub/i386-pc/normal.mod", "usr/lib/grub/x86_64-efi/normal.mod",
                 "usr/lib/systemd/boot/efi/systemd-bootx64.efi", "usr/sbin/grub-install",
                 "usr/bin/grub-mkimage", "usr/bin/ostree", "usr/lib/ostree/ostree-prepare-root",
                 "usr/sbin/mkfs.ext4", "usr/sbin/mkfs.xfs", "usr/sbin/mkfs.vfat", "usr/bin/mcopy",
                 "usr/sbin/sgdisk", "usr/sbin/sfdisk", "usr/bin/dracut"):
        assert (t / path).exists(), path
    assert (t / "lib").is_symlink() and os.readlink(t / "lib") == "usr/lib"   # merged /usr


def test_bootc_py_runs_in_a_chroot_of_the_image(rootfs: Callable[[str], Rootfs]) -> None:
    ns: dict[str, Any] = {}
    exec((BOOTC_PY_SRC / "__init__.py").read_text(), ns)
    res = chroot(rootfs("v1").path, "/usr/bin/bootc-py", "--version")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"bootc-py {ns['__version__']}"
    assert (rootfs("v1").path / "usr/lib/python3/dist-packages/bootc_py/cli.py").is_file()
    assert not (rootfs("v1").path / "usr/local/bin/bootc-py").exists()


def test_python_libraries_import_in_the_image(rootfs: Callable[[str], Rootfs]) -> None:
    code = ("import requests, typer, tqdm, zstandard, parted, pyudev, gi\n"
            "gi.require_version('OSTree', '1.0')\n"
            "from gi.repository import OSTree\n"
            "print(OSTree.Sysroot.__name__)")
    res = chroot(rootfs("v1").path, "/usr/bin/python3", "-c", code)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "Sysroot"


def test_units_installed_and_enabled(rootfs: Callable[[str], Rootfs]) -> None:
    t = rootfs("v1").path
    check = t / "etc/systemd/system/multi-user.target.wants/bootc-py-fixture-check.service"
    assert os.readlink(check) == "/usr/lib/systemd/system/bootc-py-fixture-check.service"
    assert (t / "usr/lib/bootc-py-fixture/check.py").is_file()
    assert (t / "etc/systemd/system/getty.target.wants/serial-getty@ttyS0.service").is_symlink()
    for unit in sorted((BOOTC_PY_SRC / "data/systemd").glob("*")):
        if not unit.is_file() or unit.suffix not in (".service", ".timer", ".path", ".socket",
                                                      ".target", ".mount"):
            continue
        assert (t / "usr/lib/systemd/system" / unit.name).read_bytes() == unit.read_bytes()
        for link, target in enable_links(unit):
            assert os.readlink(t / link) == target, link


def test_boot_speed_settings(rootfs: Callable[[str], Rootfs]) -> None:
    """What the sample image leaves out of a test boot (vm-fixtures/README.md, "Boot time"),
    and the manager's longer device wait for a slow host."""
    t = rootfs("v1").path
    for unit in ("sys-kernel-debug.mount", "modprobe@drm.service", "getty@tty1.service"):
        assert os.readlink(t / "etc/systemd/system" / unit) == "/dev/null", unit
    for gen in ("systemd-gpt-auto-generator", "systemd-sysv-generator"):
        assert os.readlink(t / "etc/systemd/system-generators" / gen) == "/dev/null", gen
    assert (t / "usr/lib/systemd/system-generators/ostree-system-generator").exists()
    blacklist = (t / "etc/modprobe.d/50-bootc-py-fixture.conf").read_text().split()
    assert "kvm" in blacklist and "aesni_intel" in blacklist
    assert "dm_mod" not in blacklist and "loop" not in blacklist      # LVM and live media
    conf = (t / "usr/lib/systemd/system.conf.d/50-bootc-py-fixture.conf").read_text()
    assert "DefaultDeviceTimeoutSec=300s" in conf.splitlines()


@pytest.mark.parametrize("variant,health,rc", [("v1", "10-fixture.sh", 0),
                                               ("v2", "10-fixture.sh", 0),
                                               ("broken", "10-fixture-broken.sh", 1)])
def test_variant_marker_and_health_check(rootfs: Callable[[str], Rootfs], variant: str,
                                         health: str, rc: int) -> None:
    t = rootfs(variant).path
    assert (t / "usr/share/bootc-py-fixture/variant").read_text() == variant + "\n"
    scripts = os.listdir(t / "usr/lib/greenboot/check/required.d")
    assert scripts == [health]
    res = chroot(t, f"/usr/lib/greenboot/check/required.d/{health}")
    assert res.returncode == rc, res.stdout + res.stderr


def test_lean_and_nothing_of_the_build_host(samples: SampleImages,
                                           rootfs: Callable[[str], Rootfs]) -> None:
    t = rootfs("v1").path
    size = tree_bytes(t)
    print(f"uncompressed tree: {size / 1e6:.0f} MB")
    assert size < SIZE_LIMIT
    os_layer = samples.oci_dir / "blobs/sha256" / samples.layer_digests("v1")[0][7:]
    with tarfile.open(os_layer) as tar:
        dev = [m for m in tar.getmembers() if m.name.startswith("dev/")]
    assert dev == []                # mmdebstrap's device nodes are not in the image
    assert not (t / "etc/resolv.conf").exists()
    assert "://" not in (t / "etc/apt/sources.list").read_text()
    assert os.listdir(t / "etc/apt/sources.list.d") == []
    assert not (t / "usr/share/doc/bash/README").exists()       # docs filtered out
    assert not list((t / "usr/share/man").glob("man1/*"))
    shadow = {line.split(":")[0]: line.split(":")[1]
              for line in (t / "etc/shadow").read_text().splitlines()}
    assert shadow["root"] == ""
    assert (t / "etc/machine-id").read_text() == ""
    assert (t / "etc/hostname").read_text().strip() == "bootc-py-fixture"
    assert (t / "etc/fstab").exists() and (t / "var/lib/dpkg/status").exists()  # not ostree yet


def test_a_second_build_comes_from_the_cache(samples: SampleImages, tmp_path: Path) -> None:
    t0 = time.monotonic()
    again = build_samples(tmp_path / "oci")
    seconds = time.monotonic() - t0
    assert seconds < 30
    for v in samples.variants:
        assert "os" not in again.results[v].built
        if again.results[v].layer_keys != samples.results[v].layer_keys:
            continue    # bootc-py's source changed while the tests ran: a new layer is right
        assert again.manifest_digest(v) == samples.manifest_digest(v)
        assert again.results[v].built == ()
