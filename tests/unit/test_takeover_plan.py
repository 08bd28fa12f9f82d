"""to-existing-root, reset and finalize: the pure parts (no host access)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bootc_py.disk.discover import stack_of
from bootc_py.errors import DiskError
from bootc_py.installer import cleanup_unit
from bootc_py.installer.existing_root import (
    PAUSE_SECONDS,
    Replace,
    RootFacts,
    SpaceCheck,
    TakeoverPlan,
    refuse_split_root,
    warn_and_pause,
)
from bootc_py.installer.reset import booted_kargs, default_stateroot


def _fake_sysfs(sys: Path, slaves: dict[str, str]) -> None:
    """dm-0 (an LVM volume) on the given partitions/disks: {name: parent disk or ''}."""
    block = sys / "class/block"
    devices = sys / "devices/virtual/block"
    for name, parent in slaves.items():
        if parent:
            part = sys / "devices/pci0/virtio" / parent / name
            part.mkdir(parents=True)
            (part / "partition").write_text("3\n")
        else:
            part = sys / "devices/pci0/virtio" / name
            part.mkdir(parents=True)
        block.mkdir(parents=True, exist_ok=True)
        (block / name).symlink_to(part)
    dm = devices / "dm-0"
    (dm / "dm").mkdir(parents=True)
    (dm / "dm/uuid").write_text("LVM-abcdef\n")
    (dm / "dm/name").write_text("vg0-root\n")
    (dm / "slaves").mkdir()
    for name in slaves:
        (dm / "slaves" / name).symlink_to(block / name)
    (block / "dm-0").symlink_to(dm)
    (sys / "dev/block").mkdir(parents=True)
    (sys / "dev/block/253:0").symlink_to(dm)


def test_lvm_root_over_two_disks_is_refused_naming_both(tmp_path: Path) -> None:
    _fake_sysfs(tmp_path, {"vda3": "vda", "vdb": ""})
    stack = stack_of("/dev/mapper/vg0-root", "253:0", tmp_path)
    assert stack.lvm == "vg0-root" and stack.disks == ("/dev/vda", "/dev/vdb")
    with pytest.raises(DiskError) as err:
        refuse_split_root(Path("/"), stack)
    assert "LVM logical volume vg0-root, which spans 2 disks (/dev/vda, /dev/vdb)" in str(err.value)


def test_lvm_root_on_one_disk_is_accepted(tmp_path: Path) -> None:
    _fake_sysfs(tmp_path, {"vda3": "vda", "vda4": "vda"})
    stack = stack_of("/dev/mapper/vg0-root", "253:0", tmp_path)
    assert stack.disks == ("/dev/vda",)
    refuse_split_root(Path("/"), stack)


def _plan(replace: Replace = Replace.ALONGSIDE, cleanup: bool = False) -> TakeoverPlan:
    from bootc_py.installer.config import InstallConfig
    from bootc_py.installer.plan import BootloaderChoice, InstallPlan

    install = InstallPlan(source="oci:/x:v1", target="oci:/x:v1", manifest_digest="sha256:ab",
                          stateroot="default", filesystem="ext4",
                          bootloaders=BootloaderChoice(grub_bios=True), kargs=(),
                          config=InstallConfig())
    return TakeoverPlan(install, RootFacts(Path("/"), "/dev/vda3", True, ("/dev/vda",)),
                        replace, cleanup, SpaceCheck(Path("/"), 1 << 30, 3 << 30),
                        "/root/.ssh/authorized_keys")


def test_pause_without_acknowledgement(capsys: pytest.CaptureFixture[str]) -> None:
    slept: list[float] = []
    warn_and_pause(_plan(cleanup=True), acknowledged=False, sleep=slept.append)
    assert slept == [PAUSE_SECONDS]
    err = capsys.readouterr().err
    assert "the bootloader will be replaced" in err and "--acknowledge-destructive" in err
    assert "deleted on its first boot" in err


def test_no_pause_when_acknowledged() -> None:
    slept: list[float] = []
    warn_and_pause(_plan(), acknowledged=True, sleep=slept.append)
    assert slept == []


def test_plan_render_shows_space_and_keys() -> None:
    text = _plan().render()
    assert "Free space:   3 GiB free, 1 GiB needed" in text
    assert "Root keys:    /root/.ssh/authorized_keys" in text
    assert "the running system" in text


def test_cleanup_script_keeps_ostree_and_boot() -> None:
    script = cleanup_unit.render_script()
    assert "'ostree' 'boot' 'lost+found' '.bootc-aleph.json'" in script
    assert "rm -rf --one-file-system" in script
    assert script.rstrip().endswith('say "bootc-py destructive cleanup: done"')
    unit = cleanup_unit.render_unit()
    assert f"ConditionPathExists=/sysroot/{cleanup_unit.FLAG}" in unit


def test_default_stateroot_takes_the_next_free_number() -> None:
    import datetime

    day = datetime.date(2026, 12, 2)
    assert default_stateroot({"default"}, day) == "state-2026-0"
    assert default_stateroot({"default", "state-2026-0"}, day) == "state-2026-1"


def test_booted_kargs_come_from_the_booted_entry(tmp_path: Path) -> None:
    entries = tmp_path / "loader/entries"
    entries.mkdir(parents=True)
    (entries / "ostree-1-default.conf").write_text(
        "title A\nversion 1\nlinux /ostree/a/vmlinuz\ninitrd /ostree/a/initramfs.img\n"
        "options root=UUID=r rw console=ttyS0 ostree=/ostree/boot.1/default/a/0\n")
    (entries / "ostree-2-default.conf").write_text(
        "title B\nversion 2\nlinux /ostree/b/vmlinuz\ninitrd /ostree/b/initramfs.img\n"
        "options root=UUID=r rw quiet ostree=/ostree/boot.1/default/b/0\n")
    cmdline = "BOOT_IMAGE=/ostree/a/vmlinuz root=UUID=r rw console=ttyS0 " \
              "ostree=/ostree/boot.1/default/a/0\n"
    assert booted_kargs(tmp_path, cmdline) == ("root=UUID=r", "rw", "console=ttyS0")
