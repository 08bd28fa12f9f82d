"""`install bootloader`: install the bootloaders into a finished install that has none
(`--bootloader none`, a layout whose owner added the boot partitions later) or repair them.

The target is the mounted physical root of the install (its /boot mounted inside when it is a
separate filesystem, as `install to-filesystem` takes it). The bootloader binaries come from
the default deployment, the image that will boot; the menu timeout from that image's install
configuration, as an install would have used it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from bootc_py import log as steplog
from bootc_py.bootloader import setup as bootloader
from bootc_py.disk.plan import PartType
from bootc_py.errors import UsageError
from bootc_py.installer import config as install_config
from bootc_py.installer import sysroot as install_state
from bootc_py.installer.plan import BootloaderChoice, choose_bootloaders
from bootc_py.installer.to_filesystem import disk_partitions, fit_to_disk, mount_of
from bootc_py.run import DEVICE_TIMEOUT, output, run
from bootc_py.store.sysroot import Sysroot

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class BootloaderPlan:
    root: Path
    setup: bootloader.BootloaderSetup
    disk: Path | None
    esp_device: Path | None
    image_root: Path    # the default deployment, where the bootloader binaries come from
    replaces: tuple[str, ...]  # what a previous install recorded, if anything

    @property
    def names(self) -> tuple[str, ...]:
        return BootloaderChoice(self.setup.grub_bios, self.setup.grub_efi,
                                self.setup.systemd_boot).names

    def render(self) -> str:
        lines = [f"Target:       {self.root}",
                 f"Bootloaders:  {', '.join(self.names)}",
                 f"From:         {self.image_root}",
                 f"Menu timeout: {self.setup.timeout} s"]
        if self.disk:
            lines.append(f"Disk:         {self.disk}")
        if self.replaces:
            lines.append(f"Replaces:     {', '.join(self.replaces)}")
        return "\n".join(lines) + "\n"


def plan_bootloader(root: Path, bootloader_name: str, *, generic: bool,
                    efi_firmware: bool) -> BootloaderPlan:
    """Everything resolved and checked; nothing written."""
    root = root.resolve()
    if bootloader_name not in ("grub", "systemd"):
        raise UsageError(f"--bootloader {bootloader_name}: this verb installs grub or systemd",
                         "choose --bootloader grub or --bootloader systemd")
    root_fs = mount_of(root)
    if root_fs is None:
        raise UsageError(f"{root} is not a mount point",
                         "mount the install's root filesystem there (and its /boot inside)")
    store = Sysroot(root)
    if not store.repo.exists():
        raise UsageError(f"{root} holds no ostree sysroot (no ostree/repo)",
                         "install an image first (install to-disk --bootloader none, "
                         "to-filesystem)")
    default = store.default()
    if default is None:
        raise UsageError(f"{root} has no deployment", "install an image first")
    boot_fs = mount_of(root / "boot")
    if boot_fs is None and _separate_boot_in_fstab(default.path):
        raise UsageError(f"{root / 'boot'} is not mounted but the install has its own /boot",
                         f"mount the /boot filesystem at {root / 'boot'}")
    disk, parts = disk_partitions(root_fs.source)
    choice = fit_to_disk(choose_bootloaders(bootloader_name, generic=generic,
                                            efi_firmware=efi_firmware), disk, parts, root)
    if not choice.names:
        raise UsageError(f"the disk under {root} has neither a BIOS boot partition nor an "
                         "EFI system partition", "add one (GPT type EF02 or EF00) first")
    if choice.systemd_boot and boot_fs is None:
        raise UsageError("systemd-boot needs /boot on its own filesystem",
                         f"mount one at {root / 'boot'} or use --bootloader grub")
    esp = parts.get(PartType.ESP) if (choice.grub_efi or choice.systemd_boot) else None
    boot_uuid = boot_fs.uuid if boot_fs else root_fs.uuid
    setup = bootloader.BootloaderSetup(
        grub_bios=choice.grub_bios, grub_efi=choice.grub_efi, systemd_boot=choice.systemd_boot,
        boot_uuid=boot_uuid,
        esp_uuid=(output(["blkid", "-s", "UUID", "-o", "value", esp], timeout=DEVICE_TIMEOUT)
                  or None) if esp else None,
        grub_prefix="/grub" if boot_fs else "/boot/grub",
        timeout=install_config.load_tree(default.path).menu_timeout)
    previous = bootloader.load_setup(root / "boot")
    replaces = BootloaderChoice(previous.grub_bios, previous.grub_efi,
                                previous.systemd_boot).names if previous else ()
    return BootloaderPlan(root=root, setup=setup, disk=Path(disk) if disk else None,
                          esp_device=Path(esp) if esp else None, image_root=default.path,
                          replaces=replaces)


def _separate_boot_in_fstab(deployment: Path) -> bool:
    fstab = deployment / "etc/fstab"
    if not fstab.is_file():
        return False
    return any(len(f) >= 2 and f[1] == "/boot" and not f[0].startswith("#")
               for f in (line.split() for line in fstab.read_text().splitlines()))


def apply(plan: BootloaderPlan) -> None:
    with steplog.step("bootloader", f"Installing {', '.join(plan.names)}"):
        bootloader.install(plan.setup, boot=plan.root / "boot", image_root=plan.image_root,
                           disk=plan.disk, esp_device=plan.esp_device)
    with steplog.step("finalize", "Recording the bootloaders and flushing to disk"):
        install_state.record_bootloaders(plan.root, plan.names)
        for path in (plan.root / "boot", plan.root):
            run(["fsfreeze", "--freeze", str(path)], check=False)
            run(["fsfreeze", "--unfreeze", str(path)], check=False)
