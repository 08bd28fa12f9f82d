"""Install options (what the user asked) and the install plan (what will be done).

The plan is resolved before anything is written: image digest, filesystem, bootloaders, kernel
arguments and the partition layout. `--dry-run` prints it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bootc_py.disk.plan import PartitionPlan
from bootc_py.errors import UsageError
from bootc_py.installer.config import FILESYSTEMS, InstallConfig

if TYPE_CHECKING:  # the CLI builds InstallOptions for every run; the pull code loads on use
    from bootc_py.image.source import PullOptions

BOOTLOADERS = ("grub", "systemd", "none")


@dataclass(frozen=True)
class InstallOptions:
    """What the user asked for (CLI flags or a kickstart), before resolution."""

    pull: PullOptions
    source_imgref: str | None = None
    target_imgref: str | None = None
    stateroot: str = "default"
    filesystem: str | None = None
    root_size: int | None = None
    bootloader: str = "grub"
    generic_image: bool = False
    kargs: tuple[str, ...] = ()
    root_ssh_authorized_keys: str | None = None
    wipe: bool = False
    disk_size: int | None = None  # for --via-loopback when the file must be created

    def __post_init__(self) -> None:
        if self.filesystem is not None and self.filesystem not in FILESYSTEMS:
            raise UsageError(f"unknown filesystem '{self.filesystem}'",
                             f"choose one of: {', '.join(FILESYSTEMS)}")
        if self.bootloader not in BOOTLOADERS:
            raise UsageError(f"unknown bootloader '{self.bootloader}'",
                             f"choose one of: {', '.join(BOOTLOADERS)}")
        if not self.stateroot or "/" in self.stateroot or self.stateroot.startswith("."):
            raise UsageError(f"invalid stateroot name '{self.stateroot}'")


@dataclass(frozen=True)
class BootloaderChoice:
    grub_bios: bool = False
    grub_efi: bool = False
    systemd_boot: bool = False

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(n for n, on in (("grub-bios", self.grub_bios), ("grub-efi", self.grub_efi),
                                     ("systemd-boot", self.systemd_boot)) if on)


def choose_bootloaders(bootloader: str, *, generic: bool, efi_firmware: bool) -> BootloaderChoice:
    """GRUB for the firmware this machine booted with, or for both with --generic-image;
    systemd-boot is UEFI-only (a generic image adds GRUB for BIOS)."""
    if bootloader == "none":
        return BootloaderChoice()
    bios = generic or not efi_firmware
    uefi = generic or efi_firmware
    if bootloader == "systemd":
        return BootloaderChoice(grub_bios=generic, systemd_boot=True)
    return BootloaderChoice(grub_bios=bios, grub_efi=uefi)


@dataclass(frozen=True)
class InstallPlan:
    source: str
    target: str
    manifest_digest: str
    stateroot: str
    filesystem: str
    bootloaders: BootloaderChoice
    kargs: tuple[str, ...]  # after root=UUID=... rw, which are known once formatted
    config: InstallConfig
    device: Path | None = None
    partitions: PartitionPlan | None = None
    warnings: tuple[str, ...] = field(default=())

    def render(self) -> str:
        lines = [
            f"Image:        {self.source}",
            f"Digest:       {self.manifest_digest}",
            f"Updates from: {self.target}",
            f"Stateroot:    {self.stateroot}",
            f"Root fs:      {self.filesystem}",
            f"Bootloaders:  {', '.join(self.bootloaders.names) or 'none'}",
            f"Kernel args:  {' '.join(['root=UUID=<root>', 'rw', *self.kargs])}",
        ]
        if self.device:
            lines.append(f"Device:       {self.device}")
        text = "\n".join(lines) + "\n"
        if self.partitions:
            text += self.partitions.render()
        for warning in self.warnings:
            text += f"warning: {warning}\n"
        return text
