"""Boot entries -> GRUB configuration and the systemd-boot ESP copy."""

from __future__ import annotations

from pathlib import Path

import pytest

from bootc_py.bootloader import grub, systemd_boot
from bootc_py.bootloader.bls import read_entries
from bootc_py.errors import BootloaderError

ENTRY = """title Debian GNU/Linux 12 (bookworm) {ver} (ostree:{idx})
version {version}
options root=UUID=abc rw console=tty0 console=ttyS0,115200n8 \
ostree=/ostree/boot.1/default/{csum}/{idx}
linux /ostree/default-{csum}/vmlinuz-6.1.0-50-cloud-amd64
initrd /ostree/default-{csum}/initramfs-6.1.0-50-cloud-amd64.img
"""


def make_boot(tmp: Path, versions: dict[int, str]) -> Path:
    boot = tmp / "boot"
    entries = boot / "loader.1/entries"
    entries.mkdir(parents=True)
    (boot / "loader").symlink_to("loader.1")
    for idx, (version, csum) in enumerate(sorted(versions.items(), reverse=True)):
        (entries / f"ostree-{version}-default.conf").write_text(
            ENTRY.format(ver=f"v{version}", idx=idx, version=version, csum=csum))
        kdir = boot / "ostree" / f"default-{csum}"
        kdir.mkdir(parents=True, exist_ok=True)
        (kdir / "vmlinuz-6.1.0-50-cloud-amd64").write_text(f"kernel {csum}")
        (kdir / "initramfs-6.1.0-50-cloud-amd64.img").write_text(f"initrd {csum}")
    return boot


def test_grub_cfg_lists_entries_default_first(tmp_path: Path) -> None:
    boot = make_boot(tmp_path, {1: "a" * 8, 2: "b" * 8})
    entries = read_entries(boot)
    assert [e.version for e in entries] == ["2", "1"]
    cfg = grub.render_grub_cfg(entries, "1234-ABCD", timeout=5)
    assert "set timeout=5" in cfg
    assert "search --no-floppy --fs-uuid --set=root 1234-ABCD" in cfg
    first = cfg.index("menuentry 'Debian GNU/Linux 12 (bookworm) v2 (ostree:0)'")
    second = cfg.index("menuentry 'Debian GNU/Linux 12 (bookworm) v1 (ostree:1)'")
    assert first < second
    assert ("    linux /ostree/default-bbbbbbbb/vmlinuz-6.1.0-50-cloud-amd64 root=UUID=abc rw "
            "console=tty0 console=ttyS0,115200n8 ostree=/ostree/boot.1/default/bbbbbbbb/0") in cfg
    assert "    initrd /ostree/default-bbbbbbbb/initramfs-6.1.0-50-cloud-amd64.img" in cfg


def test_grub_quotes_titles() -> None:
    from bootc_py.bootloader.bls import BlsEntry

    entry = BlsEntry("x.conf", "it's", "1", "/k", ("/i",), "ro")
    assert "menuentry 'it'\\''s'" in grub.render_grub_cfg([entry], "u")


def test_write_grub_cfg_is_atomic_replace(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # grub-script-check runs a program (tests/integration/test_install_kargs.py runs it).
    monkeypatch.setattr(grub, "have", lambda tool: False)
    path = grub.write_grub_cfg(tmp_path, "one\n")
    grub.write_grub_cfg(tmp_path, "two\n")
    assert path.read_text() == "two\n"
    assert [p.name for p in path.parent.iterdir()] == ["grub.cfg"]


def test_systemd_boot_sync_follows_deployment_changes(tmp_path: Path) -> None:
    """Through a mounted ESP (DirEsp); the mtools writer is exercised by the root tests."""
    (tmp_path / "esp").mkdir()
    esp = systemd_boot.DirEsp(tmp_path / "esp")
    boot = make_boot(tmp_path / "one", {1: "a" * 8})
    systemd_boot.sync(esp, boot, read_entries(boot))
    assert esp.read("loader/entries/ostree-1-default.conf").startswith(b"title")
    assert esp.read("ostree/default-aaaaaaaa/vmlinuz-6.1.0-50-cloud-amd64") == b"kernel aaaaaaaa"
    assert b"editor no" in esp.read("loader/loader.conf")
    # A new deployment replaces the old one entirely: entries and kernels follow.
    boot2 = make_boot(tmp_path / "two", {2: "b" * 8, 3: "c" * 8})
    systemd_boot.sync(esp, boot2, read_entries(boot2))
    assert esp.listdir("loader/entries") == ["ostree-2-default.conf", "ostree-3-default.conf"]
    assert esp.listdir("ostree") == ["default-bbbbbbbb", "default-cccccccc"]
    assert not list((tmp_path / "esp").rglob("*.tmp"))


def test_dir_esp_refuses_escaping_paths(tmp_path: Path) -> None:
    with pytest.raises(BootloaderError):
        systemd_boot.DirEsp(tmp_path).write_text("../x", "no")
