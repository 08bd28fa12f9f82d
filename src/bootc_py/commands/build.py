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
                                    "for several (default qcow2). Or one installer medium: "
                                    "iso (alias anaconda-iso, bootc-installer) or "
                                    "pxe-tar-xz (a network boot bundle)."),
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
    no_payload: bool = typer.Option(False, "--no-payload",
                                    help="iso: leave the image out; the install pulls it from "
                                    "its registry (--target-imgref, else IMGREF)."),
    cache_dir: Path = CACHE_DIR,
    tls_verify: str = TLS_VERIFY,
    authfile: Path = AUTHFILE,
) -> None:
    """Build disk images (raw, qcow2, vmdk, vhd) or an installer ISO from a bootable
    container image.

    Example: bootc-py build --type qcow2 --output out docker://registry/os:1

    The ISO (bootiso/install.iso) boots under BIOS and UEFI, as a CD or written to a USB
    stick; its live system is the image itself and it installs unattended with the kickstart
    given by inst.ks=, else --kickstart, else the default (the only empty disk, LVM, reboot).
    """
    from bootc_py.artifacts.disk_image import build_disk_images, parse_types
    from bootc_py.commands.install import _options

    names = [n.strip() for t in (types or []) for n in t.split(",") if n.strip()]
    media = {MEDIA_TYPES[n] for n in names if n in MEDIA_TYPES}
    if media:
        if any(n not in MEDIA_TYPES for n in names):
            raise UsageError("an installer medium (iso, pxe-tar-xz) and disk images cannot be "
                             "built in one run",
                             "run build once for the medium and once for the disk types")
        if len(media) > 1:
            raise UsageError("build one installer medium per run (iso or pxe-tar-xz)")
        if rootfs or disk_size or root_ssh_authorized_keys or bootloader != "grub":
            raise UsageError("--rootfs, --disk-size, --root-ssh-authorized-keys and "
                             "--bootloader are for disk types",
                             "for an installer medium, say it in the kickstart (--kickstart)")
        _build_medium(media.pop(), imgref, output, kickstart=kickstart,
                      target_imgref=target_imgref, kargs=tuple(karg or ()),
                      payload=not no_payload, cache_dir=cache_dir, tls_verify=tls_verify,
                      authfile=authfile)
        return
    if no_payload:
        raise UsageError("--no-payload is for --type iso")
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


# bootc-image-builder's names for installer media -> the artifact type.
MEDIA_TYPES = {"iso": "iso", "anaconda-iso": "iso", "bootc-installer": "iso",
               "pxe-tar-xz": "pxe-tar-xz"}


def _build_medium(kind: str, imgref: str, output: Path, *, kickstart: str | None,
                  target_imgref: str | None, kargs: tuple[str, ...], payload: bool,
                  cache_dir: Path | None, tls_verify: str | None,
                  authfile: Path | None) -> None:
    from bootc_py.artifacts.disk_image import write_manifest
    from bootc_py.artifacts.iso import build_iso
    from bootc_py.artifacts.live import MediaOptions
    from bootc_py.commands.install import _options
    from bootc_py.installer.prepare import prepare

    ks_text = None
    if kickstart:
        from bootc_py.commands.kickstart import _translate
        from bootc_py.kickstart import source
        from bootc_py.kickstart.translate import KickstartError

        try:  # checked now, against this image, so a bad kickstart never reaches a machine
            _translate(kickstart, None, False, cache_dir=cache_dir, tls_verify=tls_verify,
                       authfile=authfile, source_imgref=imgref, target_imgref=target_imgref)
        except KickstartError as exc:
            from bootc_py.commands.kickstart import _report

            _report(exc)
            raise typer.Exit(1) from None
        ks_text = source.load(kickstart).text
    opts = _options(source_imgref=imgref, target_imgref=target_imgref, stateroot="default",
                    filesystem=None, root_size=None, bootloader="grub", generic_image=True,
                    karg=list(kargs), keys=None, wipe=True, disk_size=None,
                    cache_dir=cache_dir, tls_verify=tls_verify, authfile=authfile)
    prepared = prepare(opts)
    media = MediaOptions(payload=payload, kickstart=ks_text,
                         target_imgref=prepared.plan.target, kargs=kargs)
    if kind == "iso":
        path = build_iso(prepared.image, output, media)
    else:
        from bootc_py.artifacts.pxe import build_pxe

        path = build_pxe(prepared.image, output, media)
    artifact = write_manifest(output, prepared.plan, [(kind, path)])[0]
    typer.echo(f"{kind}: {path} ({artifact.size} bytes, sha256 {artifact.sha256})")
