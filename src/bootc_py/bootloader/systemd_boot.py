"""systemd-boot on the ESP, reading copies of ostree's BLS entries and kernels.

The ESP cannot be mounted here (no vfat in the kernel), and systemd-boot cannot read ext4
/boot without an extra driver, so entries and the kernels they name are copied to the ESP with
mtools and kept in step after every deployment change (FACTS §4 A, §6).
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Protocol

from bootc_py.bootloader import bootcount
from bootc_py.bootloader.bls import BlsEntry
from bootc_py.errors import BootloaderError

log = logging.getLogger(__name__)

SYSTEMD_BOOT_EFI = "usr/lib/systemd/boot/efi/systemd-bootx64.efi"


class EspWriter(Protocol):
    """What bootloader code needs from an ESP writer (disk.esp.Esp, mtools-based)."""

    def mkdir(self, path: str) -> None: ...
    def copy(self, src: Path, dest: str) -> None: ...
    def write_text(self, dest: str, text: str) -> None: ...
    def listdir(self, path: str) -> list[str]: ...
    def read(self, path: str) -> bytes: ...
    def remove(self, path: str) -> None: ...
    def remove_tree(self, path: str) -> None: ...


class DirEsp:
    """The ESP through its mount point, on a booted host where it is mounted (/boot/efi).

    Writing a mounted FAT behind the kernel's back (mtools on the device) would be undone by
    the kernel's own cached metadata, so a mounted ESP is written through the mount.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, path: str) -> Path:
        rel = PurePosixPath(path.strip("/"))
        if ".." in rel.parts:
            raise BootloaderError(f"refusing ESP path {path}")
        return self.root / rel

    def mkdir(self, path: str) -> None:
        self._path(path).mkdir(parents=True, exist_ok=True)

    def copy(self, src: Path, dest: str) -> None:
        target = self._path(dest)
        tmp = target.with_name(target.name + ".tmp")
        shutil.copyfile(src, tmp)
        with tmp.open("rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)

    def write_text(self, dest: str, text: str) -> None:
        target = self._path(dest)
        tmp = target.with_name(target.name + ".tmp")
        with tmp.open("w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)

    def listdir(self, path: str) -> list[str]:
        target = self._path(path)
        return sorted(p.name for p in target.iterdir()) if target.is_dir() else []

    def read(self, path: str) -> bytes:
        return self._path(path).read_bytes()

    def remove(self, path: str) -> None:
        self._path(path).unlink(missing_ok=True)

    def remove_tree(self, path: str) -> None:
        shutil.rmtree(self._path(path), ignore_errors=True)


def render_loader_conf(timeout: int = 3) -> str:
    return f"timeout {timeout}\nconsole-mode keep\neditor no\n"


def install_binary(esp: EspWriter, image_root: Path) -> None:
    efi = image_root / SYSTEMD_BOOT_EFI
    if not efi.is_file():
        raise BootloaderError(f"the image has no systemd-boot EFI binary at /{SYSTEMD_BOOT_EFI}",
                              "install 'systemd-boot-efi' in the image, or use --bootloader grub")
    for directory in ("EFI", "EFI/BOOT", "EFI/systemd", "loader", "loader/entries"):
        esp.mkdir(directory)
    esp.copy(efi, "EFI/BOOT/BOOTX64.EFI")
    esp.copy(efi, "EFI/systemd/systemd-bootx64.efi")


def _kernel_dirs(entries: Sequence[BlsEntry]) -> dict[str, list[str]]:
    """Directory on /boot (e.g. ostree/default-<csum>) -> file names the entries use there."""
    dirs: dict[str, list[str]] = {}
    for entry in entries:
        for path in (entry.linux, *entry.initrd):
            posix = PurePosixPath(path.lstrip("/"))
            names = dirs.setdefault(str(posix.parent), [])
            if posix.name not in names:
                names.append(posix.name)
    return dirs


def sync(esp: EspWriter, boot: Path, entries: Sequence[BlsEntry], *, timeout: int = 3,
         arm: BlsEntry | None = None, tries: int = 0) -> None:
    """Make the ESP's entries and kernels match /boot's.

    Order matters for a crash at any point: kernels are copied before the entries naming them,
    and stale entries are removed before the kernels they named. Boot counting: `arm` gets
    `tries` (+N in its ESP name); entries keep the counters systemd-boot left on the ESP.
    """
    wanted = _kernel_dirs(entries)
    for directory in ("loader", "loader/entries", "ostree"):
        esp.mkdir(directory)
    esp.write_text("loader/loader.conf", render_loader_conf(timeout))
    present_kernel_dirs = set(esp.listdir("ostree"))
    for directory, names in wanted.items():
        if not directory.startswith("ostree/") or "/" in directory[len("ostree/"):]:
            raise BootloaderError(f"unexpected kernel path in boot entries: {directory}")
        short = directory[len("ostree/"):]
        have = set(esp.listdir(directory)) if short in present_kernel_dirs else set()
        esp.mkdir(directory)
        for name in names:
            if name not in have:  # names carry the content checksum: same name, same bytes
                esp.copy(boot / directory / name, f"{directory}/{name}")
    present = {name: esp.read(f"loader/entries/{name}").decode(errors="replace")
               for name in esp.listdir("loader/entries")}
    esp_name = bootcount.esp_names(entries, present, arm, tries)
    wanted_entries = set(esp_name.values())
    for entry in entries:
        esp.write_text(f"loader/entries/{esp_name[entry.filename]}",
                       (boot / "loader/entries" / entry.filename).read_text())
    for name in esp.listdir("loader/entries"):
        if name not in wanted_entries:
            esp.remove(f"loader/entries/{name}")
    wanted_short = {d[len("ostree/"):] for d in wanted}
    for short in present_kernel_dirs - wanted_short:
        esp.remove_tree(f"ostree/{short}")
    log.debug("ESP in sync: %d entries, %d kernel dirs", len(entries), len(wanted))
