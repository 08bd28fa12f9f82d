"""Boot counting on a hybrid disk (GRUB for BIOS, systemd-boot on the ESP), with the real
grub-editenv: the loader that started the boot is the one that judges it."""

from __future__ import annotations

import sys
from pathlib import Path

from bootc_py.bootloader import bootcount, systemd_boot
from bootc_py.bootloader.bls import read_entries

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "unit"))
from test_bootloader_config import make_boot


def _esp(tmp_path: Path) -> systemd_boot.DirEsp:
    (tmp_path / "esp").mkdir()
    return systemd_boot.DirEsp(tmp_path / "esp")


def test_a_hybrid_disk_is_judged_by_the_bootloader_that_started_the_boot(
        tmp_path: Path) -> None:
    """GRUB for BIOS plus systemd-boot on the ESP: both are armed for the new deployment. Under
    UEFI systemd-boot's entries tell a fallback (GRUB's untouched counter must not say
    "counted"), and a green UEFI boot blesses both, so a later BIOS boot does not count down."""
    from bootc_py.bootloader.setup import RECORD, BootloaderSetup
    from bootc_py.update.health import BootState, bless, boot_state

    esp = _esp(tmp_path)
    boot = make_boot(tmp_path / "one", {1: "a" * 8, 2: "b" * 8})
    (boot / RECORD).parent.mkdir(parents=True)
    (boot / RECORD).write_text(BootloaderSetup(grub_bios=True, grub_efi=False,
                                               systemd_boot=True, boot_uuid="b",
                                               esp_uuid="E").to_json())
    entries = read_entries(boot)
    systemd_boot.sync(esp, boot, entries, arm=entries[0], tries=2)
    bootcount.arm_grub(boot, 2)
    new, old = "/ostree/boot.1/default/bbbbbbbb/0", "/ostree/boot.1/default/aaaaaaaa/1"
    entries_dir = tmp_path / "esp/loader/entries"
    (entries_dir / "ostree-2-default+2.conf").rename(entries_dir / "ostree-2-default+0-2.conf")
    assert boot_state(boot, old, efi=True, esp=esp) == BootState(counted=False, fell_back=True)
    assert boot_state(boot, new, efi=False, esp=esp) == BootState(counted=True, fell_back=False)

    (entries_dir / "ostree-2-default+0-2.conf").rename(entries_dir / "ostree-2-default+1-1.conf")
    assert bless(boot, new, efi=True, esp=esp) == "ESP entry renamed ostree-2-default.conf"
    assert esp.listdir("loader/entries") == ["ostree-1-default.conf", "ostree-2-default.conf"]
    assert "boot_counter" not in bootcount.read_grubenv(boot)
