"""`install to-disk`: partition a whole disk (or a disk image file) and install onto it.

Steps, each named and timed: pull, preflight (lint + install config, before any write),
discover + check the target, partition + format, mount, then the shared deploy steps, the
bootloader, finalize and unmount. Every loop device and mount belongs to one ExitStack, so a
failure at any step unwinds them and says which step failed.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path

from bootc_py import log as steplog
from bootc_py.disk import apply as disk_apply
from bootc_py.disk import checks, discover
from bootc_py.disk.loop import LoopDevice, create_sparse, loops_of
from bootc_py.disk.model import human_size
from bootc_py.disk.mount import Mount
from bootc_py.disk.plan import PartitionPlan, Role, min_disk_size, plan_disk
from bootc_py.errors import DiskError, UsageError
from bootc_py.image.ref import parse_imgref
from bootc_py.installer.deploy import InstallResult, TargetFilesystems, finish, install_into
from bootc_py.installer.plan import InstallOptions, InstallPlan
from bootc_py.installer.prepare import PreparedImage, prepare
from bootc_py.nospace import mountpoint_of, no_space

log = logging.getLogger(__name__)

GiB = 1 << 30


def default_disk_size(unpacked_bytes: int) -> int:
    """A disk image size with room for one upgrade: at least 4 GiB, whole GiB."""
    need = max(4 * GiB, min_disk_size(unpacked_bytes) + unpacked_bytes)
    return -(-need // GiB) * GiB


@dataclass(frozen=True)
class DiskInstall:
    plan: InstallPlan
    result: InstallResult | None  # None for --dry-run


def _plan_partitions(prepared: PreparedImage, device_size: int, sector_size: int,
                     opts: InstallOptions) -> PartitionPlan:
    return plan_disk(device_size, sector_size=sector_size, filesystem=prepared.plan.filesystem,
                     root_size=opts.root_size,
                     bootloader=opts.bootloader, bios=True, uefi=True)


def check_before_pull(device: Path, opts: InstallOptions, *, via_loopback: bool) -> None:
    """Everything that needs no image bytes, so a mistyped /dev/sdx costs no download."""
    if opts.target_imgref:
        parse_imgref(opts.target_imgref)
    # Even an empty image needs this much (partitions, the smallest root): checked now, and
    # against the image's real size once it is pulled.
    floor = min_disk_size(0)
    if not via_loopback:
        # Busy, partition, read-only, no medium, far too small, not empty without --wipe.
        info = discover.disk_info(device)
        checks.check_target(info, wipe=opts.wipe, min_size=floor)
        if info.is_loop and info.backing_file:  # the same file through another loop device
            others = [discover.disk_info(d) for d in loops_of(Path(info.backing_file))
                      if d.resolve() != info.path.resolve()]
            checks.check_image_file_free(Path(info.backing_file),
                                         [o for o in others if o.mounts])
        return
    size = device.stat().st_size if device.is_file() else opts.disk_size
    if size is not None and size < floor:
        raise DiskError(f"{device} is too small: {human_size(size)} ({size} bytes), need at "
                        f"least {human_size(floor)} ({floor} bytes) for any image",
                        "give a bigger --disk-size" if not device.exists() else
                        f"use a bigger file: truncate -s {-(-floor // GiB)}G {device}")
    if device.exists():
        if not device.is_file():
            raise UsageError(f"{device} is not a regular file",
                             "--via-loopback installs into a disk image file")
        if opts.disk_size is not None:
            raise UsageError(f"--disk-size: {device} exists already; its size is used",
                             f"remove it to make a new one, or resize it: truncate -s SIZE "
                             f"{device}")
        checks.check_image_file_free(device, [discover.disk_info(d) for d in loops_of(device)])
        if not opts.wipe:  # a used image file without --wipe: refused now, not after the pull
            with LoopDevice(device, read_only=True) as loop:
                info = dataclasses.replace(discover.disk_info(loop.path), path=device,
                                           read_only=False)  # attached read-only to look
            checks.check_target(info, wipe=False, min_size=floor)


# What a sparse image file takes besides the OS tree: the filesystems' own metadata (mkfs
# of /boot, the ESP and the root), the kernel and initramfs copied to /boot, the ostree
# repository's own files. A margin (10% of the tree and this), not a measured figure.
WRITTEN_OVERHEAD = 256 << 20


def check_room_for(file: Path, unpacked_bytes: int) -> None:
    """A sparse image file only takes what is written: the OS tree and the overhead around
    it. Too little room ends in a one-line refusal, not in mkfs's I/O error mid-install."""
    parent = file.parent if file.parent.exists() else mountpoint_of(file)
    need = unpacked_bytes + unpacked_bytes // 10 + WRITTEN_OVERHEAD
    if shutil.disk_usage(parent).free < need:
        raise no_space(file, need, f"the disk image {file.name}")


def install_to_disk(device: Path, opts: InstallOptions, *, via_loopback: bool = False,
                    dry_run: bool = False) -> DiskInstall:
    check_before_pull(device, opts, via_loopback=via_loopback)
    prepared = prepare(opts)
    size = opts.disk_size or default_disk_size(prepared.summary.unpacked_bytes)
    created = False
    if via_loopback and not device.exists():
        if dry_run:
            parts = _plan_partitions(prepared, size, 512, opts)
            return DiskInstall(replace(prepared.plan, device=device, partitions=parts), None)
        check_room_for(device, prepared.summary.unpacked_bytes)
        create_sparse(device, size)
        created = True
        log.info("created %s (%.1f GiB, sparse)", device, size / GiB)
    try:
        with ExitStack() as stack:
            block = stack.enter_context(LoopDevice(device)).path if via_loopback else device
            with steplog.step("check-target", f"Checking {device}"):
                info = discover.disk_info(block)
                try:
                    checks.check_target(info, wipe=opts.wipe or created,
                                        min_size=min_disk_size(prepared.summary.unpacked_bytes))
                except DiskError as exc:
                    if block == device:
                        raise
                    # The user named the file, not the loop device it was attached to.
                    raise DiskError(exc.message.replace(str(block), str(device)),
                                    exc.hint and exc.hint.replace(str(block), str(device))
                                    ) from None
                parts = _plan_partitions(prepared, info.size_bytes, info.logical_sector_size,
                                         opts)
            plan = replace(prepared.plan, device=device, partitions=parts)
            if dry_run:
                return DiskInstall(plan, None)
            result = _install(stack, block, plan, prepared, opts)
    except BaseException:
        if created:  # never leave a half-written image file we made ourselves
            device.unlink(missing_ok=True)
            log.info("removed the partial disk image %s", device)
        raise
    return DiskInstall(plan, result)


def _install(stack: ExitStack, block: Path, plan: InstallPlan, prepared: PreparedImage,
             opts: InstallOptions) -> InstallResult:
    assert plan.partitions is not None
    with steplog.step("partition", f"Partitioning and formatting {block}"):
        applied = disk_apply.apply_plan(block, plan.partitions)
    root_part = applied.part(Role.ROOT)
    boot_part = applied.part(Role.BOOT)
    esp_part = applied.get(Role.ESP)
    if root_part.fs_uuid is None or boot_part.fs_uuid is None:
        raise DiskError("the new filesystems have no UUID")
    mnt = Path(tempfile.mkdtemp(prefix="bootc-py-target-"))
    stack.callback(os.rmdir, mnt)
    with steplog.step("mount", "Mounting the target"):
        stack.enter_context(Mount(root_part.path, mnt, fstype=plan.filesystem))
        (mnt / "boot").mkdir(exist_ok=True)
        stack.enter_context(Mount(boot_part.path, mnt / "boot", fstype="ext4"))
    target = TargetFilesystems(
        root=mnt, root_uuid=root_part.fs_uuid, root_fstype=plan.filesystem,
        boot_uuid=boot_part.fs_uuid, boot_fstype="ext4", boot_separate=True,
        esp_uuid=esp_part.fs_uuid if esp_part else None,
        esp_device=esp_part.path if esp_part else None, disk=block)
    result = install_into(target, plan, prepared.image)
    finish(target, plan, prepared.image, result,
           root_ssh_authorized_keys=opts.root_ssh_authorized_keys, unmount_follows=True)
    return result
