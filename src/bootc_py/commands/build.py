"""`bootc-py build`: disk images and installer media from a bootable image."""

from __future__ import annotations

from pathlib import Path

import typer

from bootc_py.commands.common import (
    AUTHFILE,
    BOOTLOADER,
    CACHE_DIR,
    KARG,
    ROOT_KEYS,
    TARGET_IMGREF,
    TLS_VERIFY,
    parse_size,
)
from bootc_py.errors import UsageError


def build(
    imgref: str = typer.Argument(..., help="The bootable image (docker://, oci:, ...)."),
    types: list[str] = typer.Option(None, "--type", metavar="TYPE",
                                    help="raw, qcow2, vmdk or vhd; repeat or comma-separate "
                                    "for several (default qcow2)."),
    output: Path = typer.Option(Path("output"), "--output", "-o",
                                help="Output directory (image/, qcow2/, vmdk/, vpc/, "
                                "manifest.json)."),
    rootfs: str = typer.Option(None, "--rootfs", "--filesystem", metavar="xfs|ext4|btrfs",
                               help="Root filesystem (default: the image's install config, "
                               "else xfs)."),
    disk_size: str = typer.Option(None, "--disk-size", metavar="SIZE",
                                  help="Virtual disk size, e.g. 10G (default: from the "
                                  "image's size, at least 4 GiB)."),
    target_imgref: str = TARGET_IMGREF,
    karg: list[str] = KARG,
    root_ssh_authorized_keys: Path = ROOT_KEYS,
    bootloader: str = BOOTLOADER,
    kickstart: str = typer.Option(None, "--kickstart", metavar="KS",
                                  help="Install the way this Anaconda kickstart says (layout, "
                                  "users, keys, kargs, %post); a path or an http(s)/tftp URL."),
    cache_dir: Path = CACHE_DIR,
    tls_verify: str = TLS_VERIFY,
    authfile: Path = AUTHFILE,
) -> None:
    """Build disk images (raw, qcow2, vmdk, vhd) from a bootable container image.

    Example: bootc-py build --type qcow2 --output out docker://registry/os:1
    """
    from bootc_py.artifacts.disk_image import build_disk_images, parse_types
    from bootc_py.commands.install import _options

    formats = parse_types(types or [])
    opts = _options(source_imgref=imgref, target_imgref=target_imgref, stateroot="default",
                    filesystem=rootfs, root_size=None, bootloader=bootloader,
                    generic_image=True, karg=karg, keys=root_ssh_authorized_keys, wipe=True,
                    disk_size=disk_size, cache_dir=cache_dir, tls_verify=tls_verify,
                    authfile=authfile)
    if disk_size:
        parse_size(disk_size, "--disk-size")
    install = None
    if kickstart:
        from bootc_py.commands.kickstart import build_installer

        if rootfs or root_ssh_authorized_keys or bootloader != "grub":
            raise UsageError("--rootfs, --root-ssh-authorized-keys and --bootloader do not go "
                             "with --kickstart", "say it in the kickstart (part / --fstype, "
                             "sshkey, bootc --bootloader)")
        install = build_installer(kickstart, imgref, target_imgref=target_imgref,
                                  kargs=karg or [], disk_size=opts.disk_size,
                                  cache_dir=cache_dir, tls_verify=tls_verify, authfile=authfile)
    result = build_disk_images(formats, output, opts, install)
    for artifact in result.artifacts:
        typer.echo(f"{artifact.type}: {output / artifact.path} ({artifact.size} bytes, "
                   f"sha256 {artifact.sha256})")
