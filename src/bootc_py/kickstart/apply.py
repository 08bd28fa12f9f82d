"""Run a KickstartPlan: %pre, the disk layout, the install, /etc, %post; %onerror on failure.

Reuses the install steps `install to-disk` has (prepare, disk apply, install_into, finish);
what is kickstart's own is the layout (disk/layout.py), the /etc configuration (etc.py) and
the scripts.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path

from bootc_py import log as steplog
from bootc_py.disk import apply as disk_apply
from bootc_py.disk import checks, discover, volumes
from bootc_py.disk.layout import LayoutPlan, plan_layout
from bootc_py.disk.loop import LoopDevice, create_sparse
from bootc_py.disk.model import DiskInfo
from bootc_py.disk.mount import Mount, is_mountpoint
from bootc_py.disk.plan import min_disk_size
from bootc_py.errors import CommandError, DiskError, InstallError, UsageError
from bootc_py.installer.chroot import ChrootableTarget
from bootc_py.installer.deploy import TargetFilesystems, finish, install_into
from bootc_py.installer.plan import BootloaderChoice, InstallPlan
from bootc_py.installer.prepare import prepare
from bootc_py.installer.to_disk import check_before_pull, check_room_for, default_disk_size
from bootc_py.kickstart import etc
from bootc_py.kickstart.translate import DiskTarget, KickstartPlan, ScriptPlan
from bootc_py.run import run

log = logging.getLogger(__name__)

# Where Anaconda mounts the installed system for %post --nochroot.
NOCHROOT_ROOT = Path("/mnt/sysroot")
FSTAB_DONE = ("/", "/boot", "/boot/efi")  # written by the installer itself


@dataclass(frozen=True)
class KickstartInstall:
    summary: str
    warnings: tuple[str, ...]
    layout: LayoutPlan
    plan: InstallPlan


def target_device(plan: KickstartPlan, via_loopback: Path | None) -> Path | None:
    if via_loopback is not None:
        return via_loopback
    return Path(plan.target.disk) if plan.target.disk else None


def known_size(device: Path | None, is_file: bool, size: int | None) -> int | None:
    """The disk size a --dry-run can plan against, without writing anything."""
    if device is None:
        return size
    if is_file:
        return device.stat().st_size if device.exists() else size
    return discover.disk_info(device).size_bytes if device.exists() else None


def run_script(script: ScriptPlan, *, chroot: ChrootableTarget | None = None) -> None:
    """Run one script; with --erroronfail a failure fails the install with its output."""
    with steplog.step(f"ks-{script.kind}", f"Running %{script.kind} from {script.where}"):
        if chroot is not None:
            tmpdir = chroot.var / "tmp"
            tmpdir.mkdir(parents=True, exist_ok=True)
            fd, host_path = tempfile.mkstemp(prefix="ks-script-", dir=tmpdir)
            inside = "/var/tmp/" + Path(host_path).name
            argv = chroot.argv(script.interpreter, inside)
            log_path = (chroot.root / script.log.lstrip("/")) if script.log else None
        else:
            fd, host_path = tempfile.mkstemp(prefix="ks-script-")
            argv = [script.interpreter, host_path]
            log_path = Path(script.log) if script.log else None
        try:
            with os.fdopen(fd, "w") as f:
                f.write(script.body)
            try:
                res = run(argv, check=False, capture=True)
            except CommandError as exc:  # the interpreter itself is missing
                res = None
                err = exc.message
            out = (res.stdout + res.stderr) if res is not None else err
            if log_path is not None:
                log_path.parent.mkdir(parents=True, exist_ok=True)
                log_path.write_text(out)
            failed = res is None or res.returncode != 0
            if failed:
                code = res.returncode if res is not None else 127
                tail = " | ".join(out.strip().splitlines()[-5:])
                if script.erroronfail:
                    raise InstallError(f"%{script.kind} at {script.where} failed (exit "
                                       f"{code}, --erroronfail): {tail}")
                log.warning("%%%s at %s failed (exit %d): %s", script.kind, script.where,
                            code, tail)
        finally:
            os.unlink(host_path)


def install(plan: KickstartPlan, device: Path, *, via_loopback: bool) -> KickstartInstall:
    if plan.layout.volume_groups and not volumes.load_device_mapper():
        # lvcreate would fail after the disk is already partitioned: refuse before anything.
        raise DiskError("the kickstart's layout uses LVM, but this kernel has no device-mapper "
                        "driver (not in /proc/misc)", "modprobe dm_mod, or use part/btrfs")
    # What needs no image bytes, before %pre and the pull (as install to-disk does): a disk
    # image file still attached or mounted (reformatting it would corrupt the live mounts),
    # a busy or mistyped disk, --disk-size on an existing file.
    check_before_pull(device, plan.options, via_loopback=via_loopback)
    for script in plan.scripts_of("pre"):  # before any disk is touched
        run_script(script)
    try:
        return _install(plan, device, via_loopback=via_loopback)
    except BaseException:
        for script in plan.scripts_of("onerror"):
            try:
                run_script(script)
            except InstallError as exc:
                log.error("%s", exc.message)
        raise


def _check_listed(target: DiskTarget, info: DiskInfo, device: Path) -> None:
    """`clearpart --list` erases only what it lists; bootc-py writes a whole new table, so a
    disk holding any other partition is refused before anything is written."""
    if not target.listed:
        return
    others = sorted(p.number for p in info.partitions if p.number not in target.listed_numbers)
    if others:
        raise UsageError(
            f"clearpart --list names {', '.join(target.listed)}, but {device} also holds "
            f"partition {', '.join(map(str, others))}: bootc-py writes a whole new partition "
            "table and would erase it",
            "add it to clearpart --list, or erase the whole disk with clearpart --all "
            "--drives=DISK")


def _install(plan: KickstartPlan, device: Path, *, via_loopback: bool) -> KickstartInstall:
    opts = plan.options
    prepared = prepare(opts)
    need = min_disk_size(prepared.summary.unpacked_bytes)
    created = False
    if via_loopback:
        if device.exists() and not device.is_file():
            raise UsageError(f"{device} is not a regular file",
                             "--via-loopback installs into a disk image file")
        if not device.exists():
            check_room_for(device, prepared.summary.unpacked_bytes)
            create_sparse(device, opts.disk_size or default_disk_size(
                prepared.summary.unpacked_bytes))
            created = True
    warnings: list[str] = []
    try:
        with ExitStack() as stack:
            block = stack.enter_context(LoopDevice(device)).path if via_loopback else device
            with steplog.step("check-target", f"Checking {device}"):
                info = discover.disk_info(block)
                checks.check_target(info, wipe=opts.wipe or created, min_size=need)
                _check_listed(plan.target, info, device)
                layout = plan_layout(plan.layout, info.size_bytes,
                                     sector_size=info.logical_sector_size)
            with steplog.step("partition", f"Partitioning and formatting {block}"):
                applied = disk_apply.apply_plan(block, layout.partitions)
            if layout.volume_groups or layout.btrfs:
                with steplog.step("volumes", "Creating LVM and btrfs volumes"):
                    vols = volumes.apply_volumes(
                        layout, {p.number: p.path for p in applied.partitions}, stack)
            else:
                vols = {}
            devices = _devices(layout, applied, vols)
            root, boot, esp = devices["/"], devices.get("/boot"), devices.get("/boot/efi")
            mnt = Path(tempfile.mkdtemp(prefix="bootc-py-target-"))
            stack.callback(os.rmdir, mnt)
            with steplog.step("mount", "Mounting the target"):
                stack.enter_context(Mount(root.device, mnt, fstype=root.fstype,
                                          options=_subvol(root)))
                if boot is not None:
                    (mnt / "boot").mkdir(exist_ok=True)
                    stack.enter_context(Mount(boot.device, mnt / "boot", fstype=boot.fstype))
            wanted = prepared.plan.bootloaders
            has_bios = any(p.role.value == "bios-boot" for p in applied.partitions)
            choice = BootloaderChoice(grub_bios=wanted.grub_bios and has_bios,
                                      grub_efi=wanted.grub_efi and esp is not None,
                                      systemd_boot=wanted.systemd_boot and esp is not None)
            if not choice.names and opts.bootloader != "none":
                raise UsageError("the layout has no partition a bootloader can use",
                                 "add reqpart, or part biosboot / part /boot/efi")
            config = prepared.plan.config
            if plan.system.bootloader_timeout is not None:  # bootloader --timeout
                config = replace(config, bootloader_timeout=plan.system.bootloader_timeout)
            iplan = replace(prepared.plan, device=device, partitions=layout.partitions,
                            bootloaders=choice, config=config)
            target = TargetFilesystems(
                root=mnt, root_uuid=root.uuid, root_fstype=root.fstype,
                boot_uuid=boot.uuid if boot else root.uuid,
                boot_fstype=boot.fstype if boot else root.fstype,
                boot_separate=boot is not None, esp_uuid=esp.uuid if esp else None,
                esp_device=esp.device if esp else None, disk=block)
            result = install_into(target, iplan, prepared.image)
            deployment = result.deployment
            with steplog.step("mount-var", "Mounting the kickstart's /var filesystems"):
                _mount_var(stack, deployment.var, devices)
            with steplog.step("ks-config", "Writing the kickstart's configuration to /etc"):
                _extra_fstab(deployment.path / "etc/fstab", layout, devices)
                cfg = plan.system
                etc.apply_accounts(deployment.path / "etc", deployment.var, cfg)
                etc.apply_ssh_keys(deployment.path / "etc", deployment.var, cfg)
                warnings += etc.apply_settings(deployment.path / "etc", deployment.path / "usr",
                                               cfg)
            _post_scripts(plan, deployment.path, deployment.var)
            finish(target, iplan, prepared.image, result, root_ssh_authorized_keys=None,
                   unmount_follows=True)
    except BaseException:
        if created:
            device.unlink(missing_ok=True)
        raise
    summary = (f"Installed {iplan.source} ({iplan.manifest_digest}) to {device} from "
               f"{plan.source}: deployment {deployment.checksum[:12]}.{deployment.serial}, "
               f"{len(layout.partitions.partitions)} partitions, bootloaders "
               f"{', '.join(choice.names) or 'none'}")
    if plan.finish:
        summary += f"\nThe kickstart asks to {plan.finish}: left to the caller"
    return KickstartInstall(summary, tuple(warnings), layout, iplan)


def _devices(layout: LayoutPlan, applied: disk_apply.AppliedDisk,
             vols: dict[str, volumes.Formatted]) -> dict[str, volumes.Formatted]:
    """Every mount of the layout (mount point, or "swap:N") -> what to mount."""
    by_number = {p.number: p for p in applied.partitions}
    out: dict[str, volumes.Formatted] = {}
    for i, m in enumerate(layout.mounts):
        key = m.mountpoint if m.mountpoint != "swap" else f"swap:{i}"
        if m.source.startswith("part:"):
            p = by_number[int(m.source.split(":")[1])]
            if p.fs_uuid is None:
                raise DiskError(f"{p.path} ({m.mountpoint}) has no filesystem UUID")
            out[key] = volumes.Formatted(p.path, p.fs_uuid, m.fstype, m.options)
        else:  # an LV or a btrfs (sub)volume: one swap LV at most, keyed "swap"
            out[key] = vols[m.mountpoint]
    return out


def _mount_var(stack: ExitStack, var: Path, devices: dict[str, volumes.Formatted]) -> None:
    """Mount /var and the filesystems below it over the stateroot's /var (as they will be at
    boot), moving what the install seeded there onto them; homes, keys and %post writes then
    land where the booted system sees them."""
    for key in sorted(k for k in devices if k == "/var" or k.startswith("/var/")):
        f = devices[key]
        where = var / key.removeprefix("/var").lstrip("/")
        where.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="bootc-py-var-") as staging, \
                Mount(f.device, Path(staging), fstype=f.fstype, options=_subvol(f)):
            run(["cp", "-a", "--", f"{where}/.", staging])
        for child in list(where.iterdir()):
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
        stack.enter_context(Mount(f.device, where, fstype=f.fstype, options=_subvol(f)))


def _subvol(f: volumes.Formatted) -> list[str]:
    return [o for o in f.options.split(",") if o.startswith("subvol=")]


def _extra_fstab(fstab: Path, layout: LayoutPlan,
                 devices: dict[str, volumes.Formatted]) -> None:
    lines = []
    for key, f in devices.items():
        if key in FSTAB_DONE:
            continue
        if f.fstype == "swap":
            lines.append(f"UUID={f.uuid} none swap {f.options} 0 0")
        else:
            lines.append(f"UUID={f.uuid} {key} {f.fstype} {f.options} 0 "
                         f"{0 if f.fstype == 'btrfs' else 2}")
    if lines:
        with fstab.open("a") as fh:
            fh.write("".join(line + "\n" for line in lines))


def _post_scripts(plan: KickstartPlan, root: Path, var: Path) -> None:
    for script in plan.scripts_of("post"):
        if script.chroot:
            with ChrootableTarget(root, var) as chroot:
                run_script(script, chroot=chroot)
            continue
        if is_mountpoint(NOCHROOT_ROOT):
            raise InstallError(f"{NOCHROOT_ROOT} is already a mount point",
                               "unmount it: %post --nochroot finds the new system there")
        with ExitStack() as stack:
            stack.enter_context(Mount(root, NOCHROOT_ROOT, options=["bind"]))
            stack.enter_context(Mount(var, NOCHROOT_ROOT / "var", options=["bind"]))
            run_script(script)
