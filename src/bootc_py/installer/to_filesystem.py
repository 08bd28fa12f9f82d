"""`install to-filesystem`: install into a root filesystem (and /boot) the caller prepared.

The caller owns the mounts; bootc-py finds their devices and UUIDs, refuses a root that is
not empty, and installs the bootloaders the disk under the root can carry (GRUB for BIOS when
it has a BIOS boot partition, UEFI when it has an ESP).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path

from bootc_py.disk import discover
from bootc_py.disk.plan import PartType
from bootc_py.errors import InstallError, UsageError
from bootc_py.installer.deploy import InstallResult, TargetFilesystems, finish, install_into
from bootc_py.installer.plan import BootloaderChoice, InstallOptions, InstallPlan
from bootc_py.installer.prepare import PreparedImage, prepare
from bootc_py.run import DEVICE_TIMEOUT, output, run

log = logging.getLogger(__name__)

ALLOWED_IN_ROOT = {"boot", "lost+found", "efi"}


@dataclass(frozen=True)
class FsInstall:
    plan: InstallPlan
    result: InstallResult | None


@dataclass(frozen=True)
class MountedFs:
    source: str
    uuid: str
    fstype: str


def mount_of(path: Path) -> MountedFs | None:
    """The filesystem mounted exactly at `path`, or None if it is not a mount point."""
    res = run(["findmnt", "--json", "--output", "SOURCE,UUID,FSTYPE,TARGET", "--mountpoint",
               str(path)], check=False, capture=True, timeout=DEVICE_TIMEOUT)
    if res.returncode != 0 or not res.stdout.strip():
        return None
    fs = json.loads(res.stdout)["filesystems"][0]
    uuid = fs.get("uuid") or output(["blkid", "-s", "UUID", "-o", "value", fs["source"]],
                                         timeout=DEVICE_TIMEOUT)
    return MountedFs(source=fs["source"], uuid=uuid, fstype=fs["fstype"])


def disk_partitions(device: str) -> tuple[str | None, dict[str, str]]:
    """(whole disk, {partition type GUID: partition device}) for the disk under `device`."""
    res = run(["lsblk", "--json", "--paths", "--inverse", "--output", "NAME,TYPE",
               device], check=False, capture=True, timeout=DEVICE_TIMEOUT)
    if res.returncode != 0:
        return None, {}
    disk: str | None = None
    stack = json.loads(res.stdout).get("blockdevices", [])
    while stack:
        node = stack.pop()
        if node.get("type") in ("disk", "loop") and node["name"] != device:
            disk = node["name"]
        stack.extend(node.get("children", []))
    if disk is None:
        return None, {}
    # Partition types come from discovery (blkid), which works without udev.
    found: dict[str, str] = {}
    for part in discover.disk_info(Path(disk)).partitions:
        if part.parttype:
            found.setdefault(part.parttype.upper(), str(part.path))
    return disk, found


def fit_to_disk(wanted: BootloaderChoice, disk: str | None, parts: dict[str, str],
                root_mount: Path) -> BootloaderChoice:
    """The wanted bootloaders the disk can carry (GRUB for BIOS needs a BIOS boot partition,
    UEFI ones an ESP); each one dropped is logged as a warning."""
    esp = parts.get(PartType.ESP)
    choice = BootloaderChoice(
        grub_bios=wanted.grub_bios and disk is not None and PartType.BIOS_BOOT in parts,
        grub_efi=wanted.grub_efi and esp is not None,
        systemd_boot=wanted.systemd_boot and esp is not None)
    for name in sorted(set(wanted.names) - set(choice.names)):
        log.warning("skipping %s: the disk under %s has no %s", name, root_mount,
                    "BIOS boot partition" if name == "grub-bios" else "EFI system partition")
    return choice


@dataclass(frozen=True)
class ResolvedTarget:
    """The image resolved and the mounted target described: nothing written yet."""

    prepared: PreparedImage
    plan: InstallPlan
    target: TargetFilesystems


def resolve_target(root_mount: Path, opts: InstallOptions) -> ResolvedTarget:
    """Pull and check the image, find the filesystems under `root_mount` and the bootloaders
    its disk can carry. Reads only; shared by to-filesystem and to-existing-root."""
    root_fs = mount_of(root_mount)
    if root_fs is None:
        raise UsageError(f"{root_mount} is not a mount point",
                         "mount the target root filesystem there first")
    boot_fs = mount_of(root_mount / "boot")
    prepared = prepare(replace(opts, filesystem=root_fs.fstype))
    disk, parts = disk_partitions(root_fs.source)
    esp = parts.get(PartType.ESP)
    choice = fit_to_disk(prepared.plan.bootloaders, disk, parts, root_mount)
    if choice.systemd_boot and boot_fs is None:
        raise UsageError("systemd-boot needs /boot on its own filesystem",
                         f"mount one at {root_mount / 'boot'} or use --bootloader grub")
    plan = replace(prepared.plan, bootloaders=choice, device=root_mount)
    esp_uuid = None
    if esp:
        esp_uuid = output(["blkid", "-s", "UUID", "-o", "value", esp],
                          timeout=DEVICE_TIMEOUT) or None
    target = TargetFilesystems(
        root=root_mount, root_uuid=root_fs.uuid, root_fstype=root_fs.fstype,
        boot_uuid=boot_fs.uuid if boot_fs else root_fs.uuid,
        boot_fstype=boot_fs.fstype if boot_fs else root_fs.fstype,
        boot_separate=boot_fs is not None, esp_uuid=esp_uuid,
        esp_device=Path(esp) if esp else None, disk=Path(disk) if disk else None)
    if not target.root_uuid:
        raise InstallError(f"cannot find the UUID of the filesystem at {root_mount}")
    return ResolvedTarget(prepared, plan, target)


def install_to_filesystem(root_mount: Path, opts: InstallOptions, *,
                          dry_run: bool = False) -> FsInstall:
    root_mount = root_mount.resolve()
    if mount_of(root_mount) is None:
        raise UsageError(f"{root_mount} is not a mount point",
                         "mount the target root filesystem there first")
    stray = sorted(p.name for p in root_mount.iterdir() if p.name not in ALLOWED_IN_ROOT)
    if stray:
        hint = "install into an empty filesystem"
        if (root_mount / "ostree/repo").is_dir():
            hint = (f"it holds an install already; to add bootloaders to it run "
                    f"'bootc-py install bootloader {root_mount}'")
        raise UsageError(f"{root_mount} is not empty (found {', '.join(stray[:5])})", hint)
    resolved = resolve_target(root_mount, opts)
    plan, target = resolved.plan, resolved.target
    if dry_run:
        return FsInstall(plan, None)
    target.boot.mkdir(exist_ok=True)
    result = install_into(target, plan, resolved.prepared.image)
    finish(target, plan, resolved.prepared.image, result,
           root_ssh_authorized_keys=opts.root_ssh_authorized_keys)
    return FsInstall(plan, result)
