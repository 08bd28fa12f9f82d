"""Install configuration merged as bootc merges it."""

from __future__ import annotations

import json

import pytest

from bootc_py.errors import ConfigError
from bootc_py.installer.config import load
from bootc_py.installer.plan import choose_bootloaders


def test_later_files_override_and_kargs_append() -> None:
    files = {
        "usr/lib/bootc/install/00-base.toml":
            b'[install.filesystem.root]\ntype = "xfs"\n[install]\nkargs = ["quiet"]\n',
        "usr/lib/bootc/install/50-custom.toml":
            b'[install]\nroot-fs-type = "ext4"\nkargs = ["console=ttyS0"]\nblock = ["direct"]\n',
        "usr/lib/bootc/install/60-arm.toml":
            b'[install]\nmatch-architectures = ["aarch64"]\nkargs = ["arm-only"]\n',
        "usr/lib/bootc/kargs.d/10-a.toml": b'kargs = ["mitigations=auto"]\n',
        "usr/lib/bootc/kargs.d/20-b.toml":
            b'kargs = ["x86"]\nmatch-architectures = ["x86_64"]\n',
        "usr/lib/bootc/kargs.d/30-c.toml": b'kargs = ["s390"]\nmatch-architectures = ["s390x"]\n',
    }
    cfg = load(files, arch="x86_64")
    assert cfg.root_fs_type == "ext4"
    assert cfg.kargs == ("quiet", "console=ttyS0")
    assert cfg.kargs_d == ("mitigations=auto", "x86")
    assert cfg.block == ("direct",)
    printed = json.loads(cfg.to_json())
    assert printed["filesystem"] == {"root": {"type": "ext4"}}
    assert printed["kargs"] == ["quiet", "console=ttyS0"]


def test_empty_config() -> None:
    cfg = load({}, arch="x86_64")
    assert cfg.root_fs_type is None and cfg.kargs == () and json.loads(cfg.to_json()) == {}


@pytest.mark.parametrize(("content", "message"), [
    (b"[install\n", "not valid TOML"),
    (b'[install]\nkargs = "quiet"\n', "list of strings"),
    (b'[install.filesystem.root]\ntype = "zfs"\n', "unsupported root filesystem type 'zfs'"),
])
def test_bad_config_is_a_clear_error(content: bytes, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as exc:
        load({"usr/lib/bootc/install/00.toml": content}, arch="x86_64")
    assert "/usr/lib/bootc/install/00.toml" in str(exc.value)


def test_bootloader_choice() -> None:
    bios_host = choose_bootloaders("grub", generic=False, efi_firmware=False)
    assert bios_host.names == ("grub-bios",)
    uefi_host = choose_bootloaders("grub", generic=False, efi_firmware=True)
    assert uefi_host.names == ("grub-efi",)
    assert choose_bootloaders("grub", generic=True, efi_firmware=False).names == \
        ("grub-bios", "grub-efi")
    assert choose_bootloaders("systemd", generic=True, efi_firmware=True).names == \
        ("grub-bios", "systemd-boot")
    assert choose_bootloaders("none", generic=True, efi_firmware=True).names == ()


def test_bootloader_timeout_from_bootc_py_install_config() -> None:
    base = {"usr/lib/bootc/install/00-base.toml": b'[install]\nkargs = ["quiet"]\n'}
    assert load(base, arch="x86_64").menu_timeout == 3  # a real disk keeps a visible menu
    assert "bootloader-timeout" not in json.loads(load(base, arch="x86_64").to_json())
    files = {**base,
             "usr/lib/bootc-py/install/10-a.toml": b"[install]\nbootloader-timeout = 5\n",
             "usr/lib/bootc-py/install/50-fast.toml": b"[install]\nbootloader-timeout = 0\n"}
    cfg = load(files, arch="x86_64")
    assert cfg.menu_timeout == 0 and cfg.kargs == ("quiet",)
    assert json.loads(cfg.to_json())["bootloader-timeout"] == 0


@pytest.mark.parametrize("value", [b"-1", b"true", b'"0"', b"301", b"1.5"])
def test_bad_bootloader_timeout_is_a_clear_error(value: bytes) -> None:
    with pytest.raises(ConfigError, match="'bootloader-timeout' must be a whole number") as exc:
        load({"usr/lib/bootc-py/install/50.toml": b"[install]\nbootloader-timeout = " + value},
             arch="x86_64")
    assert "/usr/lib/bootc-py/install/50.toml" in str(exc.value)


def test_bootloader_timeout_in_bootcs_own_directory_is_refused() -> None:
    # bootc itself rejects keys it does not know: the file would break a bootc install.
    with pytest.raises(ConfigError, match="bootc refuses it here") as exc:
        load({"usr/lib/bootc/install/50.toml": b"[install]\nbootloader-timeout = 0\n"},
             arch="x86_64")
    assert exc.value.hint == "move it to /usr/lib/bootc-py/install/NAME.toml"
