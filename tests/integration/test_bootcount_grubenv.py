"""GRUB boot counting state in a real grubenv, written by the real grub-editenv."""

from __future__ import annotations

from pathlib import Path

from bootc_py.bootloader import bootcount
from bootc_py.run import output
from testlib import require_tool


def test_arm_bless_and_fallback_state(tmp_path: Path) -> None:
    require_tool("grub-editenv")
    env = tmp_path / bootcount.GRUBENV
    bootcount.arm_grub(tmp_path, 3)
    assert env.stat().st_size == 1024  # a GRUB environment block, as save_env needs
    assert bootcount.read_grubenv(tmp_path) == {"boot_counter": "3", "boot_success": "0"}
    assert "boot_counter=3" in output(["grub-editenv", str(env), "list"])
    assert not bootcount.grub_fell_back(tmp_path)
    bootcount.bless_grub(tmp_path)
    assert bootcount.read_grubenv(tmp_path) == {"boot_success": "1"}
    # What the generated grub.cfg leaves after the tries ran out:
    output(["grub-editenv", str(env), "set", "boot_counter=-1", "boot_success=0"])
    assert bootcount.grub_fell_back(tmp_path)
    bootcount.clear_grub_fallback(tmp_path)
    assert not bootcount.grub_fell_back(tmp_path)


ENTRY = """title Debian {ver}
version {version}
options root=UUID=abc rw ostree=/ostree/boot.1/default/{bootcsum}/{idx}
linux /ostree/default-{bootcsum}/vmlinuz
"""
NEW, OLD = "1" * 64, "2" * 64


def _entries(boot: Path, order: list[str]) -> None:
    """ostree's BLS entries, the default (highest version) first; bootcsum = a letter."""
    entries = boot / "loader/entries"
    if entries.exists():
        for old in entries.iterdir():
            old.unlink()
    entries.mkdir(parents=True, exist_ok=True)
    for idx, bootcsum in enumerate(order):
        version = len(order) - idx
        (entries / f"ostree-{version}-default.conf").write_text(
            ENTRY.format(ver=bootcsum, version=version, bootcsum=bootcsum * 8, idx=idx))


def _sysroot(tmp_path: Path) -> Path:
    """/ostree/boot.1/default/<bootcsum>/<idx> -> the deployment, for both orders."""
    sysroot = tmp_path / "sysroot"
    for letter, csum in (("n", NEW), ("o", OLD)):
        deploy = sysroot / "ostree/deploy/default/deploy" / f"{csum}.0"
        deploy.mkdir(parents=True)
        for idx in (0, 1):
            link = sysroot / f"ostree/boot.1/default/{letter * 8}/{idx}"
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(deploy)
    return sysroot


def test_sync_arms_the_requested_deployment_and_stops_when_another_is_default(
        tmp_path: Path) -> None:
    """The bootloader sync's counting: arm the staged deployment once it is the default
    (its request consumed); a later rollback stops the counter, else running out of tries
    would start the entry after the new default: the deployment rolled away from."""
    require_tool("grub-editenv")
    from bootc_py.bootloader import setup as bootloader

    boot, sysroot = tmp_path / "boot", _sysroot(tmp_path)
    grub_only = bootloader.BootloaderSetup(grub_bios=True, grub_efi=False, systemd_boot=False,
                                           boot_uuid="u", esp_uuid=None)
    _entries(boot, ["o"])
    bootcount.request_tries(boot, NEW, 2)
    bootloader.update(boot, setup=grub_only, sysroot=sysroot)  # not finalized yet: waits
    assert bootcount.read_request(boot) == bootcount.ArmRequest(NEW, 2)
    assert "boot_counter" not in bootcount.read_grubenv(boot)
    _entries(boot, ["n", "o"])  # finalized: the new deployment is the default
    done = bootloader.update(boot, setup=grub_only, sysroot=sysroot)
    assert "ostree-2-default.conf: 2 boot attempts" in done
    assert bootcount.read_grubenv(boot) == {"boot_counter": "2", "boot_success": "0",
                                            bootcount.ARMED: NEW}
    assert bootcount.read_request(boot) is None
    assert "save_env -f /grub/grubenv boot_counter" in (boot / "grub/grub.cfg").read_text()
    bootloader.update(boot, setup=grub_only, sysroot=sysroot)  # same default: keeps counting
    assert bootcount.read_grubenv(boot)["boot_counter"] == "2"
    _entries(boot, ["o", "n"])  # a rollback
    done = bootloader.update(boot, setup=grub_only, sysroot=sysroot)
    assert any("boot counter dropped" in d for d in done)
    assert bootcount.read_grubenv(boot) == {"boot_success": "0"}


def test_sync_leaves_a_fallback_for_the_health_check(tmp_path: Path) -> None:
    require_tool("grub-editenv")
    from bootc_py.bootloader import setup as bootloader

    boot, sysroot = tmp_path / "boot", _sysroot(tmp_path)
    grub_only = bootloader.BootloaderSetup(grub_bios=True, grub_efi=False, systemd_boot=False,
                                           boot_uuid="u", esp_uuid=None)
    _entries(boot, ["o", "n"])
    bootcount.arm_grub(boot, 2, NEW)
    output(["grub-editenv", str(boot / bootcount.GRUBENV), "set", "boot_counter=-1"])
    bootloader.update(boot, setup=grub_only, sysroot=sysroot)
    assert bootcount.grub_fell_back(boot)  # make_fallback_permanent clears it, not the sync
