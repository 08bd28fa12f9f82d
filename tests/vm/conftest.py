"""Fixtures for the VM tests: the sample images and cold qemu boots that return the guest's
BOOTC-PY-CHECK report.

    def test_it_boots(sample_images, boot_check, tmp_path):
        ...  # make a disk from sample_images.ref("v1") with bootc-py
        facts = boot_check(Drive(disk), firmware="bios")
        assert facts["variant"] == "v1"

When a test fails, the tail of every serial console it booted is added to its report.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from testlib import require_root, require_tool
from vmharness import VM, Drive
from vmharness import boot_check as _boot_check
from vmharness.samples import DirectBootDisk, SampleImages, build_samples, make_direct_boot_disk

SERIAL_LOGS = pytest.StashKey[list[tuple[str, Path]]]()
VM_TOOLS = ("qemu-system-x86_64", "qemu-img")
HERE = Path(__file__).resolve().parent
# pytest-timeout for a VM test without its own mark: room for an install and a few cold
# boots (~1 min each, several times that when the machine is busy), not for a hang.
VM_TEST_TIMEOUT = 1800
BOOTC_PY = Path(sys.executable).parent / "bootc-py"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents and \
                item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(VM_TEST_TIMEOUT))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.when == "call" and report.failed:
        for name, log in item.stash.get(SERIAL_LOGS, []):
            try:
                text = log.read_bytes().decode(errors="replace").replace("\r", "")
            except OSError:
                continue
            tail = "\n".join([ln for ln in text.splitlines() if ln.strip()][-60:])
            report.sections.append((f"serial console: {name} ({log})", tail or "(empty)"))


def _remember(request: pytest.FixtureRequest, name: str, log: Path) -> None:
    request.node.stash.setdefault(SERIAL_LOGS, []).append((name, log))


@pytest.fixture(scope="session")
def sample_images(tmp_path_factory: pytest.TempPathFactory) -> SampleImages:
    """The sample images v1, v2, broken in one OCI layout (built once; from cache in seconds).

    `.oci_dir`, `.ref("v1")` -> "oci:/...:v1", `.manifest_digest(v)`, `.version(v)`,
    `.layer_digests(v)`, `.config(v)`, `.push(v, "127.0.0.1:PORT/name:tag")`.
    """
    require_root()
    require_tool("mmdebstrap", "umoci", "skopeo")
    return build_samples(tmp_path_factory.mktemp("sample-images") / "oci")


@pytest.fixture(scope="session")
def sample_rootfs(sample_images: SampleImages, tmp_path_factory: pytest.TempPathFactory
                  ) -> Callable[[str], Any]:
    """`sample_rootfs("v1")` -> Rootfs (`.path`, `.kver`, `.vmlinuz`, `.initramfs`), unpacked
    once per session with umoci."""
    work = tmp_path_factory.mktemp("sample-rootfs")
    return lambda variant="v1": sample_images.rootfs(variant, work)


@pytest.fixture(scope="session")
def direct_boot_disk(sample_rootfs: Callable[[str], Any],
                     tmp_path_factory: pytest.TempPathFactory
                     ) -> Callable[[str], DirectBootDisk]:
    """`direct_boot_disk("v1")` -> an ext4 disk of the flattened image (no ostree, no
    bootloader) plus `.vm_args()` to boot it with the image's own kernel and initramfs.
    Boot it with `Drive(d.disk, snapshot=True)` to keep it pristine for other tests."""
    require_tool("mkfs.ext4")
    work = tmp_path_factory.mktemp("direct-boot")
    made: dict[str, DirectBootDisk] = {}

    def get(variant: str = "v1") -> DirectBootDisk:
        if variant not in made:
            made[variant] = make_direct_boot_disk(sample_rootfs(variant),
                                                  work / f"{variant}.raw")
        return made[variant]
    return get


@pytest.fixture
def vm_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., VM]]:
    """`vm_factory(**VM args)` -> a VM (not started: `with vm: vm.check()`), its files under
    tmp_path/<name>-<n>; stopped at the end of the test; serial tail on failure."""
    require_tool(*VM_TOOLS)
    vms: list[VM] = []
    counter = itertools.count(1)

    def make(**kwargs: Any) -> VM:
        name = kwargs.pop("name", "vm")
        workdir = kwargs.pop("workdir", tmp_path / f"{name}-{next(counter)}")
        vm = VM(name=name, workdir=workdir, **kwargs)
        _remember(request, f"{name} ({workdir.name})", vm.serial_log)
        vms.append(vm)
        return vm
    yield make
    for vm in vms:
        vm.close()


@pytest.fixture
def boot_check(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[..., dict[str, Any]]:
    """`boot_check(*drives, firmware="uefi", script=None, poweroff=True, last=False,
    timeout=..., **VM args)` -> the guest's check report (dict). One cold boot each call; call
    it again to boot again. The guest powers itself off after reporting, so its writes are on
    the disk. `last=True`: nothing boots or reads these disks again, so qemu is stopped right
    after the report instead of waiting for the guest's shutdown (8-12 s under TCG)."""
    require_tool(*VM_TOOLS)
    counter = itertools.count(1)

    def boot(*drives: Drive | Path | str, last: bool = False, **kwargs: Any) -> dict[str, Any]:
        if last:
            kwargs["poweroff"] = False
        name = kwargs.pop("name", "boot")
        workdir = kwargs.pop("workdir", tmp_path / f"{name}-{next(counter)}")
        _remember(request, f"{name} ({workdir.name})", workdir / "serial.log")
        return _boot_check(*drives, name=name, workdir=workdir, **kwargs)
    return boot


def qcow2_overlay(base: Path, path: Path) -> Path:
    """A qcow2 over `base` (raw): a test boots its own copy; writes land in the overlay."""
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(base),
                    str(path)], check=True)
    return path


@pytest.fixture(scope="session")
def installed_base(request: pytest.FixtureRequest, sample_images: SampleImages,
                   tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """`installed_base(*install_args, variant="v1")` -> a raw disk bootc-py installed with
    `install to-disk --via-loopback --source-imgref <variant> *install_args`, made once per
    session for each distinct set of arguments. Never boot it directly: take an overlay
    (`installed_disk`), so every test starts from the freshly installed disk."""
    require_tool(*VM_TOOLS)
    made: dict[tuple[str, ...], Path] = {}

    def get(*install_args: str, variant: str = "v1") -> Path:
        key = (variant, *install_args)
        if key not in made:
            work = tmp_path_factory.mktemp(f"installed-{variant}")
            disk = work / "disk.raw"
            res = subprocess.run([str(BOOTC_PY), "install", "to-disk", "--via-loopback",
                                  "--source-imgref", sample_images.ref(variant),
                                  *install_args, str(disk)],
                                 capture_output=True, text=True, timeout=1800)
            assert res.returncode == 0, \
                f"bootc-py install {' '.join(install_args)} failed:\n{res.stderr[-3000:]}"
            made[key] = disk
        return made[key]
    return get


@pytest.fixture
def installed_disk(installed_base: Callable[..., Path], tmp_path: Path) -> Callable[..., Path]:
    """`installed_disk(*install_args, variant="v1", name="disk")` -> a fresh qcow2 overlay (in
    tmp_path) over a session-cached install: the install runs once, each test boots its own
    first boot. E.g. `installed_disk("--bootloader=systemd", "--karg=console=ttyS0,115200n8")`.
    """
    counter = itertools.count(1)

    def get(*install_args: str, variant: str = "v1", name: str = "disk") -> Path:
        base = installed_base(*install_args, variant=variant)
        return qcow2_overlay(base, tmp_path / f"{name}-{next(counter)}.qcow2")
    return get


@pytest.fixture(scope="session")
def plain_disk_base() -> Path:
    """The plain (non-ostree) Debian disk (vm-fixtures/fixture_image/plaindisk.py), from the
    fixture cache (read-only: boot `plain_disk()` overlays)."""
    require_root()
    require_tool("mmdebstrap", "sfdisk", "grub-install", "mcopy", *VM_TOOLS)
    from fixture_image.plaindisk import plain_disk as build

    return build()[0]


@pytest.fixture
def plain_disk(plain_disk_base: Path, tmp_path: Path) -> Callable[..., Path]:
    """`plain_disk(name="plain")` -> a fresh qcow2 overlay over the cached plain Debian disk."""
    counter = itertools.count(1)

    def get(name: str = "plain") -> Path:
        path = tmp_path / f"{name}-{next(counter)}.qcow2"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b",
                        str(plain_disk_base), str(path)], check=True)
        return path
    return get

