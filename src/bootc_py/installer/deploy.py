"""The part of every install after the filesystems exist: from mounted root (+ /boot) to a
deployment that boots. Shared by to-disk, to-filesystem and `build`."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from bootc_py import log as steplog
from bootc_py.bootloader import setup as bootloader
from bootc_py.image.source import Image
from bootc_py.installer import sysroot
from bootc_py.installer.plan import InstallPlan
from bootc_py.run import run
from bootc_py.store.importer import import_image
from bootc_py.store.sysroot import Deployment, Origin, Sysroot

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TargetFilesystems:
    """The mounted target. `boot` is root/boot, a separate filesystem or a directory."""

    root: Path
    root_uuid: str
    root_fstype: str
    boot_uuid: str            # the filesystem holding /boot (root's own when not separate)
    boot_fstype: str
    boot_separate: bool
    esp_uuid: str | None = None
    esp_device: Path | None = None
    disk: Path | None = None  # the whole disk, for GRUB's BIOS boot code

    @property
    def boot(self) -> Path:
        return self.root / "boot"


@dataclass(frozen=True)
class InstallResult:
    deployment: Deployment
    kernel: str
    layers_imported: int
    layers_reused: int


def install_into(target: TargetFilesystems, plan: InstallPlan, image: Image) -> InstallResult:
    with steplog.step("init-sysroot", "Initializing the ostree sysroot"):
        store = Sysroot.init(target.root, plan.stateroot)
    with steplog.step("import", f"Importing {plan.source} into ostree"):
        imported = import_image(store.repo, image, plan.target)
    kargs = [f"root=UUID={target.root_uuid}", "rw", *plan.kargs]
    with steplog.step("deploy", "Deploying"):
        deployment = store.deploy(imported.ref, Origin(plan.target, image.manifest_digest),
                                  stateroot=plan.stateroot, kargs=kargs, prune=False)
    with steplog.step("configure", "Writing /etc/fstab and seeding /var"):
        fstab: list[sysroot.FstabEntry] = []
        if target.boot_separate:
            fstab.append(sysroot.FstabEntry(f"UUID={target.boot_uuid}", "/boot",
                                            target.boot_fstype, "defaults", 2))
        if target.esp_uuid:
            fstab.append(sysroot.FstabEntry(f"UUID={target.esp_uuid}", "/boot/efi", "vfat",
                                            "umask=0077,shortname=winnt,nofail", 2))
        sysroot.write_fstab(deployment, fstab)
        sysroot.seed_var(deployment)
    kernel = imported.kernel.version if imported.kernel else _kernel_of(deployment.path)
    return InstallResult(deployment, kernel, imported.layers_imported, imported.layers_reused)


def _kernel_of(root: Path) -> str:
    kernels = sorted(p.parent.name for p in (root / "usr/lib/modules").glob("*/vmlinuz"))
    return kernels[0] if kernels else "unknown"


def finish(target: TargetFilesystems, plan: InstallPlan, image: Image, result: InstallResult,
           *, root_ssh_authorized_keys: str | None, unmount_follows: bool = False) -> None:
    """Keys, bootloader, the install record. With `unmount_follows` the caller unmounts right
    after, which writes everything back; otherwise the filesystems are flushed here."""
    deployment = result.deployment
    if root_ssh_authorized_keys:
        sysroot.install_root_ssh_keys(deployment, root_ssh_authorized_keys)
    choice = plan.bootloaders
    if choice.names:
        with steplog.step("bootloader", f"Installing {', '.join(choice.names)}"):
            setup = bootloader.BootloaderSetup(
                grub_bios=choice.grub_bios, grub_efi=choice.grub_efi,
                systemd_boot=choice.systemd_boot, boot_uuid=target.boot_uuid,
                esp_uuid=target.esp_uuid,
                grub_prefix="/grub" if target.boot_separate else "/boot/grub",
                timeout=plan.config.menu_timeout)
            bootloader.install(setup, boot=target.boot, image_root=deployment.path,
                               disk=target.disk, esp_device=target.esp_device)
    with steplog.step("finalize", "Recording the install and flushing to disk"):
        sysroot.write_aleph(target.root, image=plan.source, target=plan.target,
                            digest=image.manifest_digest, kernel=result.kernel,
                            stateroot=plan.stateroot,
                            extra={"bootloaders": list(choice.names)})
        if not unmount_follows:
            # The caller keeps these mounted: flush them, and freeze/thaw so the journal is
            # written back where a bootloader reading the raw filesystem will look.
            for path in (target.boot, target.root):
                run(["fsfreeze", "--freeze", str(path)], check=False)
                run(["fsfreeze", "--unfreeze", str(path)], check=False)
