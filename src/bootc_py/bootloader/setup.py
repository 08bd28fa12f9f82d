"""Install the chosen bootloaders and keep their configuration in step with ostree.

What was installed is recorded on /boot (bootc-py/bootloader.json), so the bootc-py inside the
installed image can regenerate the configuration after any later deployment change, including
at shutdown after ostree finalizes a staged deployment.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from bootc_py.bootloader import bootcount, grub, systemd_boot
from bootc_py.bootloader.bls import read_entries
from bootc_py.errors import BootcPyError, BootloaderError
from bootc_py.run import DEVICE_TIMEOUT, run

log = logging.getLogger(__name__)

RECORD = "bootc-py/bootloader.json"  # relative to the /boot filesystem


@dataclass(frozen=True)
class BootloaderSetup:
    grub_bios: bool
    grub_efi: bool
    systemd_boot: bool
    boot_uuid: str
    esp_uuid: str | None
    grub_prefix: str = "/grub"  # where grub/ is on the /boot filesystem ("/boot/grub" if on /)
    timeout: int = 3

    def __post_init__(self) -> None:
        if self.grub_efi and self.systemd_boot:
            raise BootloaderError("GRUB and systemd-boot cannot both own the ESP")
        if (self.grub_efi or self.systemd_boot) and not self.esp_uuid:
            raise BootloaderError("a UEFI bootloader needs an EFI system partition")

    @property
    def uses_esp(self) -> bool:
        return self.grub_efi or self.systemd_boot

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> BootloaderSetup:
        data = json.loads(text)
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def load_setup(boot: Path) -> BootloaderSetup | None:
    path = boot / RECORD
    if not path.is_file():
        return None
    try:
        return BootloaderSetup.from_json(path.read_text())
    except (ValueError, TypeError, KeyError) as exc:
        raise BootloaderError(f"{path} is corrupt: {exc}") from exc


def _open_esp(device: Path) -> systemd_boot.EspWriter:
    from bootc_py.disk.esp import Esp  # the mtools writer

    return Esp(device)


def find_esp(setup: BootloaderSetup) -> Path:
    if not setup.esp_uuid:
        raise BootloaderError("no EFI system partition is recorded for this system")
    res = run(["blkid", "-U", setup.esp_uuid], check=False, capture=True,
              timeout=DEVICE_TIMEOUT)
    if res.returncode != 0 or not res.stdout.strip():
        raise BootloaderError(f"the EFI system partition (UUID {setup.esp_uuid}) was not found")
    return Path(res.stdout.strip())


def _mountpoint_of(device: Path, mounts: Path = Path("/proc/self/mounts")) -> Path | None:
    real = os.path.realpath(device)
    for line in mounts.read_text().splitlines():
        source, target = line.split()[:2]
        if source.startswith("/dev/") and os.path.realpath(source) == real:
            return Path(target.replace("\\040", " "))
    return None


def _esp_writer(setup: BootloaderSetup, device: Path | None) -> systemd_boot.EspWriter:
    """The ESP through its mount point when mounted (a booted host), else mtools on the
    device (an install target, never mounted)."""
    device = device or find_esp(setup)
    mountpoint = _mountpoint_of(device)
    if mountpoint is not None:
        return systemd_boot.DirEsp(mountpoint)
    return _open_esp(device)


def esp_writer(setup: BootloaderSetup, device: Path | None = None) -> systemd_boot.EspWriter:
    """The ESP writer for this host (its mount point when mounted)."""
    return _esp_writer(setup, device)


def _vendor_grubs(esp: systemd_boot.EspWriter) -> list[str]:
    found = []
    for vendor in esp.listdir("EFI"):
        if vendor.upper() == "BOOT":
            continue
        try:
            names = esp.listdir(f"EFI/{vendor}")
        except BootcPyError:  # a file, not a vendor directory
            continue
        found += [f"EFI/{vendor}/{n}" for n in names if n.lower() == "grubx64.efi"]
    return found


def install(setup: BootloaderSetup, *, boot: Path, image_root: Path, disk: Path | None,
            esp_device: Path | None) -> None:
    """Install the bootloaders of `setup`; `boot` is the mounted /boot filesystem."""
    if setup.grub_bios:
        if disk is None:
            raise BootloaderError("GRUB for BIOS needs the whole disk to install to")
        grub.install_bios(disk, boot, image_root)
    if setup.uses_esp:
        if esp_device is None:
            raise BootloaderError("a UEFI bootloader needs the EFI system partition's device")
        # Through its mount point when mounted (to-existing-root: the running system's ESP).
        esp = _esp_writer(setup, esp_device)
        if setup.grub_efi:
            with tempfile.TemporaryDirectory(prefix="bootc-py-grub-") as tmp:
                image = grub.build_efi_image(image_root, setup.boot_uuid, setup.grub_prefix,
                                             Path(tmp) / "BOOTX64.EFI")
                for directory in ("EFI", "EFI/BOOT"):
                    esp.mkdir(directory)
                esp.copy(image, "EFI/BOOT/BOOTX64.EFI")
                # A previous OS's GRUB (EFI/debian/grubx64.efi, what its firmware boot entry
                # starts, directly or through shim) is replaced too, so that entry boots this.
                for vendor in _vendor_grubs(esp):
                    log.info("replacing the previous GRUB at %s", vendor)
                    esp.copy(image, vendor)
        if setup.systemd_boot:
            systemd_boot.install_binary(esp, image_root)
    record = boot / RECORD
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(setup.to_json())
    update(boot, setup=setup, esp_device=esp_device)


def update(boot: Path, *, setup: BootloaderSetup | None = None,
           esp_device: Path | None = None, sysroot: Path = Path("/sysroot")) -> list[str]:
    """Regenerate bootloader configuration from /boot's BLS entries; returns what was done.

    A boot-count request the updater left (bootcount.request_tries) arms the default entry
    once it is the requested deployment; `sysroot` resolves entries to deployments.
    """
    setup = setup or load_setup(boot)
    if setup is None:
        log.info("no bootc-py bootloader record on %s; nothing to update", boot)
        return []
    entries = read_entries(boot)
    done: list[str] = []
    request = bootcount.read_request(boot)
    arm = bootcount.entry_to_arm(request, entries, sysroot)
    tries = request.tries if request is not None and arm is not None else 0
    if setup.grub_bios or setup.grub_efi:
        if arm is not None and request is not None:
            bootcount.arm_grub(boot, tries, request.deployment)
        elif entries and bootcount.grub_disarm_needed(
                bootcount.read_grubenv(boot), bootcount.deployment_of(entries[0], sysroot)):
            bootcount.disarm_grub(boot)
            done.append("grubenv: boot counter dropped (another deployment is the default)")
    if setup.grub_bios or setup.grub_efi:
        prefix = setup.grub_prefix.removesuffix("/grub")  # "" or "/boot"
        grub.write_grub_cfg(boot, grub.render_grub_cfg(entries, setup.boot_uuid,
                                                       timeout=setup.timeout,
                                                       path_prefix=prefix))
        done.append(f"grub.cfg ({len(entries)} entries)")
    if setup.systemd_boot:
        systemd_boot.sync(_esp_writer(setup, esp_device), boot, entries, timeout=setup.timeout,
                          arm=arm, tries=tries)
        done.append(f"ESP ({len(entries)} entries)")
    if arm is not None:
        bootcount.clear_request(boot)
        done.append(f"{arm.filename}: {tries} boot attempts")
    return done
