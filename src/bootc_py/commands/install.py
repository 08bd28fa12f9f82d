"""`bootc-py install ...`: install a bootable image onto a disk or prepared filesystems."""

from __future__ import annotations

from pathlib import Path

import typer

from bootc_py.commands import kickstart as kickstart_cmd
from bootc_py.commands.common import (
    AUTHFILE,
    BOOTLOADER,
    CACHE_DIR,
    KARG,
    ROOT_KEYS,
    TARGET_IMGREF,
    TLS_VERIFY,
    parse_size,
    pull_options,
)
from bootc_py.errors import BootcPyError, UsageError
from bootc_py.installer.plan import InstallOptions

app = typer.Typer(
    help="Install a bootable container image onto a disk or a prepared filesystem.",
    no_args_is_help=True,
)

SOURCE_IMGREF = typer.Option(None, "--source-imgref", metavar="IMGREF",
                             help="The image to install (docker://, registry:, oci:, "
                             "oci-archive:, containers-storage:). Default: the bootable "
                             "container bootc-py runs in.")
STATEROOT = typer.Option("default", "--stateroot", help="ostree stateroot name.")
GENERIC = typer.Option(False, "--generic-image", help="Boot under both BIOS and UEFI firmware.")
DRY_RUN = typer.Option(False, "--dry-run", help="Print the install plan and change nothing.")


KEYS_MAX = 1 << 20  # an authorized_keys file is a few KiB; /dev/zero must not be read forever


def _read_keys(keys: Path) -> str:
    """The --root-ssh-authorized-keys text, or a one-line reason it cannot be."""
    what = f"--root-ssh-authorized-keys: {keys}"
    if keys.is_dir():
        raise UsageError(f"{what} is a directory", "give the authorized_keys file itself")
    if not keys.exists():
        raise UsageError(f"{what} does not exist")
    if not keys.is_file():
        raise UsageError(f"{what} is not a regular file", "give an authorized_keys file")
    try:
        with open(keys, "rb") as f:
            data = f.read(KEYS_MAX + 1)
    except OSError as exc:
        raise UsageError(f"{what}: cannot read it ({exc.strerror})") from None
    if len(data) > KEYS_MAX:
        raise UsageError(f"{what} is larger than 1 MiB: not an authorized_keys file")
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise UsageError(f"{what} is not a text file (it holds binary data)",
                         "give the public keys file (e.g. ~/.ssh/id_ed25519.pub), "
                         "not a private key or an archive") from None
    if "\0" in text:
        raise UsageError(f"{what} is not a text file (it holds binary data)")
    if not text.strip():
        raise UsageError(f"{what} is empty")
    return text


def _options(*, source_imgref: str | None, target_imgref: str | None, stateroot: str,
             filesystem: str | None, root_size: str | None, bootloader: str,
             generic_image: bool, karg: list[str] | None, keys: Path | None, wipe: bool,
             disk_size: str | None, cache_dir: Path | None, tls_verify: str | None,
             authfile: Path | None) -> InstallOptions:
    key_text = None if keys is None else _read_keys(keys)
    return InstallOptions(
        pull=pull_options(cache_dir, tls_verify, authfile),
        source_imgref=source_imgref, target_imgref=target_imgref, stateroot=stateroot,
        filesystem=filesystem,
        root_size=parse_size(root_size, "--root-size") if root_size else None,
        bootloader=bootloader, generic_image=generic_image, kargs=tuple(karg or ()),
        root_ssh_authorized_keys=key_text, wipe=wipe,
        disk_size=parse_size(disk_size, "--disk-size") if disk_size else None)


@app.command("to-disk")
def to_disk(
    device: Path = typer.Argument(..., help="The whole disk (/dev/sda), or with --via-loopback "
                                  "a disk image file (created if missing)."),
    wipe: bool = typer.Option(False, "--wipe", help="Erase existing partitions and filesystems."),
    filesystem: str = typer.Option(None, "--filesystem", "--rootfs", metavar="xfs|ext4|btrfs",
                                   help="Root filesystem (default: the image's install config, "
                                   "else xfs)."),
    root_size: str = typer.Option(None, "--root-size", metavar="SIZE",
                                  help="Size of the root partition (default: rest of the disk)."),
    via_loopback: bool = typer.Option(False, "--via-loopback",
                                      help="DEVICE is a disk image file; implies "
                                      "--generic-image."),
    disk_size: str = typer.Option(None, "--disk-size", metavar="SIZE",
                                  help="With --via-loopback: size of a new image file "
                                  "(default: from the image's size)."),
    source_imgref: str = SOURCE_IMGREF,
    target_imgref: str = TARGET_IMGREF,
    karg: list[str] = KARG,
    root_ssh_authorized_keys: Path = ROOT_KEYS,
    stateroot: str = STATEROOT,
    bootloader: str = BOOTLOADER,
    generic_image: bool = GENERIC,
    dry_run: bool = DRY_RUN,
    cache_dir: Path = CACHE_DIR,
    tls_verify: str = TLS_VERIFY,
    authfile: Path = AUTHFILE,
) -> None:
    """Partition DEVICE and install the image with an immutable root.

    Example: bootc-py install to-disk --wipe --source-imgref docker://reg/os:1 /dev/sda
    """
    from bootc_py.installer.to_disk import install_to_disk

    opts = _options(source_imgref=source_imgref, target_imgref=target_imgref,
                    stateroot=stateroot, filesystem=filesystem, root_size=root_size,
                    bootloader=bootloader, generic_image=generic_image or via_loopback,
                    karg=karg, keys=root_ssh_authorized_keys, wipe=wipe, disk_size=disk_size,
                    cache_dir=cache_dir, tls_verify=tls_verify, authfile=authfile)
    done = install_to_disk(device, opts, via_loopback=via_loopback, dry_run=dry_run)
    if dry_run:
        typer.echo(done.plan.render(), nl=False)
        return
    assert done.result is not None
    typer.echo(f"Installed {done.plan.source} ({done.plan.manifest_digest}) to {device}: "
               f"deployment {done.result.deployment.checksum[:12]}.{done.result.deployment.serial}"
               f", kernel {done.result.kernel}, bootloaders "
               f"{', '.join(done.plan.bootloaders.names) or 'none'}")


@app.command("to-filesystem")
def to_filesystem(
    root_mount: Path = typer.Argument(..., help="The mounted root filesystem (with /boot "
                                      "mounted under it if separate)."),
    source_imgref: str = SOURCE_IMGREF,
    target_imgref: str = TARGET_IMGREF,
    karg: list[str] = KARG,
    root_ssh_authorized_keys: Path = ROOT_KEYS,
    stateroot: str = STATEROOT,
    bootloader: str = BOOTLOADER,
    generic_image: bool = GENERIC,
    dry_run: bool = DRY_RUN,
    cache_dir: Path = CACHE_DIR,
    tls_verify: str = TLS_VERIFY,
    authfile: Path = AUTHFILE,
) -> None:
    """Install into filesystems you prepared and mounted (RAID, LVM, custom layouts)."""
    from bootc_py.installer.to_filesystem import install_to_filesystem

    opts = _options(source_imgref=source_imgref, target_imgref=target_imgref,
                    stateroot=stateroot, filesystem=None, root_size=None,
                    bootloader=bootloader, generic_image=generic_image, karg=karg,
                    keys=root_ssh_authorized_keys, wipe=False, disk_size=None,
                    cache_dir=cache_dir, tls_verify=tls_verify, authfile=authfile)
    done = install_to_filesystem(root_mount, opts, dry_run=dry_run)
    if dry_run:
        typer.echo(done.plan.render(), nl=False)
        return
    assert done.result is not None
    typer.echo(f"Installed {done.plan.source} ({done.plan.manifest_digest}) to {root_mount}: "
               f"deployment {done.result.deployment.checksum[:12]}.{done.result.deployment.serial}")


@app.command("to-existing-root")
def to_existing_root(
    root_path: Path = typer.Argument(Path("/target"), metavar="[ROOT_PATH]",
                                     help="The running system's root: /target when run in a "
                                     "container with -v /:/target (the default), or /."),
    replace: str = typer.Option("alongside", "--replace", metavar="alongside|wipe",
                                help="alongside: keep the old files (readable under /sysroot "
                                "afterwards); wipe: empty the target first (not the root this "
                                "system runs from)."),
    acknowledge_destructive: bool = typer.Option(
        False, "--acknowledge-destructive",
        help="Skip the warning and the 20 s pause before the bootloader is replaced."),
    cleanup: bool = typer.Option(False, "--cleanup",
                                 help="On the first boot of the new system, delete the old "
                                 "system's files from the physical root."),
    source_imgref: str = SOURCE_IMGREF,
    target_imgref: str = TARGET_IMGREF,
    karg: list[str] = KARG,
    root_ssh_authorized_keys: Path = typer.Option(
        None, "--root-ssh-authorized-keys", metavar="FILE",
        help="SSH public keys for root (default: the old system's "
        "ROOT_PATH/root/.ssh/authorized_keys)."),
    stateroot: str = STATEROOT,
    bootloader: str = BOOTLOADER,
    dry_run: bool = DRY_RUN,
    cache_dir: Path = CACHE_DIR,
    tls_verify: str = TLS_VERIFY,
    authfile: Path = AUTHFILE,
) -> None:
    """Take over the running (non-ostree) system: the next boot is the image.

    Example: bootc-py install to-existing-root --source-imgref docker://reg/os:1 /
    """
    from bootc_py.installer.existing_root import (
        ExistingRootOptions,
        Replace,
        install_to_existing_root,
    )

    if replace not in {r.value for r in Replace}:
        raise UsageError(f"unknown --replace mode '{replace}'", "choose alongside or wipe")
    install = _options(source_imgref=source_imgref, target_imgref=target_imgref,
                       stateroot=stateroot, filesystem=None, root_size=None,
                       bootloader=bootloader, generic_image=True, karg=karg,
                       keys=root_ssh_authorized_keys, wipe=False, disk_size=None,
                       cache_dir=cache_dir, tls_verify=tls_verify, authfile=authfile)
    done = install_to_existing_root(
        ExistingRootOptions(install, root_path, Replace(replace), acknowledge_destructive,
                            cleanup), dry_run=dry_run)
    if dry_run:
        typer.echo(done.plan.render(), nl=False)
        return
    assert done.result is not None
    dep = done.result.deployment
    typer.echo(f"Installed {done.plan.install.source} ({done.plan.install.manifest_digest}) "
               f"alongside the system on {done.plan.facts.root}: deployment "
               f"{dep.checksum[:12]}.{dep.serial}, bootloaders "
               f"{', '.join(done.plan.install.bootloaders.names) or 'none'}; reboot to start it"
               + (" (the old files are deleted on its first boot)" if cleanup else
                  " (the old files stay under /sysroot)"))


@app.command("bootloader")
def install_bootloader(
    root_path: Path = typer.Argument(
        ..., help="The mounted root of a finished install (its /boot mounted inside)."),
    bootloader: str = typer.Option("grub", "--bootloader", metavar="grub|systemd",
                                   help="The bootloader to install."),
    generic_image: bool = GENERIC,
    dry_run: bool = DRY_RUN,
) -> None:
    """Install the bootloaders into an install that has none (made with `--bootloader none`)
    or repair them: GRUB for BIOS when the disk has a BIOS boot partition, GRUB or
    systemd-boot on the ESP; the configuration comes from the install's BLS entries.

    Example: `bootc-py install to-disk --via-loopback --bootloader none ... disk.raw`, then
    mount the disk's root at /mnt and its /boot at /mnt/boot and run
    `bootc-py install bootloader --generic-image /mnt`."""
    from bootc_py.installer import add_bootloader
    from bootc_py.installer.prepare import EFI_FIRMWARE

    plan = add_bootloader.plan_bootloader(root_path, bootloader, generic=generic_image,
                                          efi_firmware=EFI_FIRMWARE.is_dir())
    if dry_run:
        typer.echo(plan.render(), nl=False)
        return
    add_bootloader.apply(plan)
    typer.echo(f"Installed {', '.join(plan.names)} into {plan.root}"
               + (f" (replacing {', '.join(plan.replaces)})" if plan.replaces else ""))


@app.command("live")
def install_live_cmd(
    no_finish: bool = typer.Option(False, "--no-finish",
                                   help="Do not reboot or power off afterwards, whatever the "
                                   "kickstart says."),
) -> None:
    """The installer of a bootc-py installer ISO or PXE bundle, run in its live system
    (bootc-py-live-install.service): the kickstart from inst.ks=, else the one built in, else
    bootc-image-builder's default (the only empty disk, LVM, reboot); the image from the
    medium (or the registry for a --no-payload medium). The boot medium is never a target;
    several empty disks are asked about on the console unless the run is unattended.

    Afterwards the kickstart's `reboot` or `poweroff` runs; with `--eject` a CD's tray opens
    at the very end of the shutdown (a USB stick or a PXE boot has nothing to eject)."""
    from bootc_py.commands.kickstart import report_problems
    from bootc_py.installer import live
    from bootc_py.kickstart.translate import KickstartError

    typer.echo("bootc-py live installer: starting", err=True)
    try:
        done = live.install_live()
    except KickstartError as exc:
        report_problems(exc)
        typer.echo("bootc-py live installer: the kickstart has problems; nothing was written. "
                   "The live system stays up.", err=True)
        raise typer.Exit(1) from None
    except BootcPyError as exc:
        typer.echo(f"bootc-py live installer: failed: {exc.message}. The live system stays "
                   "up: log in on the console (journalctl -u bootc-py-live-install).",
                   err=True)
        raise
    typer.echo(f"bootc-py live installer: installed onto {done.disk}", err=True)
    typer.echo(done.summary)
    if done.finish and not no_finish:
        typer.echo(f"bootc-py live installer: {done.finish}", err=True)
        live.finish(done.finish, done.eject)


@app.command("finalize")
def finalize(
    root_path: Path = typer.Argument(..., help="The mounted root of a finished install."),
) -> None:
    """The last step of an install into filesystems you manage (as bootc's): check the
    install, regenerate the bootloader configuration, flush the filesystems."""
    from bootc_py.installer.reset import finalize_install

    done = finalize_install(root_path)
    typer.echo(f"Finalized {root_path}: {done}")


@app.command("reset")
def reset(
    stateroot: str = typer.Option(None, "--stateroot", metavar="NAME",
                                  help="The new stateroot (default: state-YEAR-N)."),
    apply: bool = typer.Option(False, "--apply", help="Reboot into the new stateroot."),
    karg: list[str] = KARG,
) -> None:
    """Factory reset: deploy the booted image into a fresh stateroot (new /etc and /var); the
    current one stays as the rollback until you remove it."""
    from bootc_py.installer.reset import reset_host

    done = reset_host(stateroot, kargs=tuple(karg or ()), apply=apply)
    typer.echo(f"Reset: {done.image} deployed into the new stateroot {done.stateroot} "
               f"({done.deployment.checksum[:12]}.{done.deployment.serial}); the previous "
               f"stateroot {done.previous} is the rollback"
               + ("" if apply else "; reboot to start it"))


@app.command("print-configuration")
def print_configuration(
    imgref: str = typer.Argument(None, help="The image (default: the one bootc-py runs in)."),
    cache_dir: Path = CACHE_DIR,
    tls_verify: str = TLS_VERIFY,
    authfile: Path = AUTHFILE,
) -> None:
    """Print the image's merged install configuration as JSON (as bootc does)."""
    from bootc_py.image.ref import parse_imgref
    from bootc_py.image.source import pull
    from bootc_py.installer import config
    from bootc_py.installer.preflight import summarize
    from bootc_py.installer.prepare import running_image

    ref = parse_imgref(imgref or running_image().source)
    image = pull(ref, pull_options(cache_dir, tls_verify, authfile))
    typer.echo(config.load(summarize(image).files).to_json())


# `install kickstart KS`: the kickstart-driven install (commands/kickstart.py).
app.command("kickstart")(kickstart_cmd.install_kickstart)
