"""Install configuration from the image, merged the way bootc merges it.

- /usr/lib/bootc/install/*.toml, in file name order: an `[install]` table with
  `filesystem.root.type` (or the older `root-fs-type`), `block` and `kargs`; `match-architectures`
  drops a file meant for another architecture. Later files override scalars; kargs append.
- /usr/lib/bootc-py/install/*.toml, after those: the same `[install]` table, plus what only
  bootc-py knows, kept out of bootc's directory because bootc refuses keys it does not know:
  `bootloader-timeout` (seconds the GRUB / systemd-boot menu waits; 0 boots the default at
  once; without it the menu waits DEFAULT_BOOTLOADER_TIMEOUT).
- /usr/lib/bootc/kargs.d/*.toml, in file name order: `kargs = [...]`, optional
  `match-architectures`. These apply at install and on every update.
"""

from __future__ import annotations

import fnmatch
import json
import platform
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bootc_py.errors import ConfigError

INSTALL_GLOB = "usr/lib/bootc/install/*.toml"
BOOTC_PY_INSTALL_GLOB = "usr/lib/bootc-py/install/*.toml"
KARGS_GLOB = "usr/lib/bootc/kargs.d/*.toml"
FILESYSTEMS = ("xfs", "ext4", "btrfs")
DEFAULT_BOOTLOADER_TIMEOUT = 3
MAX_BOOTLOADER_TIMEOUT = 300


def machine_arch() -> str:
    """The architecture name bootc's match-architectures uses (Rust's std::env::consts::ARCH)."""
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(platform.machine(), platform.machine())


@dataclass(frozen=True)
class InstallConfig:
    root_fs_type: str | None = None
    block: tuple[str, ...] | None = None
    kargs: tuple[str, ...] = ()
    kargs_d: tuple[str, ...] = ()
    bootloader_timeout: int | None = None

    @property
    def menu_timeout(self) -> int:
        """Seconds the boot menu waits: the image's choice, else a sensible default."""
        if self.bootloader_timeout is None:
            return DEFAULT_BOOTLOADER_TIMEOUT
        return self.bootloader_timeout

    def to_json(self) -> str:
        """The shape `bootc install print-configuration` prints."""
        data: dict[str, Any] = {}
        if self.root_fs_type:
            data["filesystem"] = {"root": {"type": self.root_fs_type}}
            data["root-fs-type"] = self.root_fs_type
        if self.block is not None:
            data["block"] = list(self.block)
        if self.kargs:
            data["kargs"] = list(self.kargs)
        if self.kargs_d:
            data["kargs.d"] = list(self.kargs_d)
        if self.bootloader_timeout is not None:
            data["bootloader-timeout"] = self.bootloader_timeout
        return json.dumps(data, indent=2)


def _parse(name: str, data: bytes) -> dict[str, Any]:
    try:
        return tomllib.loads(data.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"/{name} is not valid TOML: {exc}",
                          "fix the file in the image") from exc


def _str_list(name: str, table: Mapping[str, Any], key: str) -> list[str] | None:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"/{name}: '{key}' must be a list of strings")
    return list(value)


def _matches_arch(name: str, table: Mapping[str, Any], arch: str) -> bool:
    archs = _str_list(name, table, "match-architectures")
    return archs is None or arch in archs


def load(files: Mapping[str, bytes], arch: str | None = None) -> InstallConfig:
    """Merge the configuration files found in an image (path relative to / -> content)."""
    arch = arch or machine_arch()
    root_fs: str | None = None
    block: tuple[str, ...] | None = None
    kargs: list[str] = []
    timeout: int | None = None
    bootc_files = sorted(p for p in files if fnmatch.fnmatchcase(p, INSTALL_GLOB))
    own_files = sorted(p for p in files if fnmatch.fnmatchcase(p, BOOTC_PY_INSTALL_GLOB))
    for name in bootc_files + own_files:
        doc = _parse(name, files[name])
        install = doc.get("install", {})
        if not isinstance(install, dict):
            raise ConfigError(f"/{name}: [install] must be a table")
        if not _matches_arch(name, install, arch):
            continue
        fs = install.get("filesystem", {}).get("root", {}).get("type")
        fs = fs or install.get("root-fs-type")
        if fs is not None:
            if fs not in FILESYSTEMS:
                raise ConfigError(f"/{name}: unsupported root filesystem type '{fs}' "
                                  f"(supported: {', '.join(FILESYSTEMS)})")
            root_fs = fs
        blocks = _str_list(name, install, "block")
        if blocks is not None:
            block = tuple(blocks)
        kargs.extend(_str_list(name, install, "kargs") or [])
        if "bootloader-timeout" in install:
            if name in bootc_files:
                raise ConfigError(f"/{name}: 'bootloader-timeout' is bootc-py's own key and "
                                  "bootc refuses it here",
                                  f"move it to /{BOOTC_PY_INSTALL_GLOB.replace('*', 'NAME')}")
            timeout = _timeout(name, install["bootloader-timeout"])
    kargs_d: list[str] = []
    for name in sorted(p for p in files if fnmatch.fnmatchcase(p, KARGS_GLOB)):
        doc = _parse(name, files[name])
        if _matches_arch(name, doc, arch):
            kargs_d.extend(_str_list(name, doc, "kargs") or [])
    return InstallConfig(root_fs_type=root_fs, block=block, kargs=tuple(kargs),
                         kargs_d=tuple(kargs_d), bootloader_timeout=timeout)


def load_tree(root: Path, arch: str | None = None) -> InstallConfig:
    """The install configuration of an unpacked image or a deployment at `root`."""
    files = {str(p.relative_to(root)): p.read_bytes()
             for glob in (INSTALL_GLOB, BOOTC_PY_INSTALL_GLOB, KARGS_GLOB)
             for p in sorted(root.glob(glob)) if p.is_file()}
    return load(files, arch)


def _timeout(name: str, value: object) -> int:
    # bool is an int subclass: `true` is not a number of seconds.
    if isinstance(value, bool) or not isinstance(value, int) \
            or not 0 <= value <= MAX_BOOTLOADER_TIMEOUT:
        raise ConfigError(f"/{name}: 'bootloader-timeout' must be a whole number of seconds "
                          f"from 0 to {MAX_BOOTLOADER_TIMEOUT}, not {value!r}")
    return value
