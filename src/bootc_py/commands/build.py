"""`bootc-py build`: disk images and installer media from a bootable image."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from bootc_py.artifacts.build_config import BuildConfig


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
    config: str = typer.Option(None, "--config", metavar="FILE",
                               help="bootc-image-builder's build configuration (config.toml, "
                               "or JSON; - reads JSON from stdin): users, kernel append, "
                               "filesystem/disk layout, installer kickstart, ISO ids. "
                               "Default: the image's /usr/lib/bootc-image-builder/config.toml."),
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

    With bootc-image-builder's config.toml (users, kernel append, filesystems):
    bootc-py build --type qcow2 --config config.toml docker://registry/os:1

    The ISO (bootiso/install.iso) boots under BIOS and UEFI, as a CD or written to a USB
    stick; its live system is the image itself and it installs unattended with the kickstart
    given by inst.ks=, else --kickstart, else the default (the only empty disk, LVM, reboot);
    with several empty disks it asks on the console which to erase, unless config.toml's
    [customizations.installer] says unattended = true.
    """
    from bootc_py.artifacts.disk_image import build_disk_images, parse_types
    from bootc_py.commands.install import _options

    cfg = _read_config(config)  # the file's problems first; the image's own needs the pull
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
        cfg = cfg or _image_config(imgref, cache_dir=cache_dir, tls_verify=tls_verify,
                                   authfile=authfile)
        _build_medium(media.pop(), imgref, output, kickstart=kickstart, cfg=cfg,
                      target_imgref=target_imgref, kargs=tuple(karg or ()),
                      payload=not no_payload, cache_dir=cache_dir, tls_verify=tls_verify,
                      authfile=authfile)
        return
    if no_payload:
        raise UsageError("--no-payload is for --type iso")
    formats = parse_types(types or [])
    if kickstart and (rootfs or root_ssh_authorized_keys or bootloader != "grub"):
        raise UsageError("--rootfs, --root-ssh-authorized-keys and --bootloader do not go "
                         "with --kickstart", "say it in the kickstart (part / --fstype, "
                         "sshkey, bootc --bootloader)")
    if cfg is None:
        # What the command line says is checked before the pull the image's config needs.
        _options(source_imgref=imgref, target_imgref=target_imgref, stateroot="default",
                 filesystem=rootfs, root_size=None, bootloader=bootloader,
                 generic_image=True, karg=karg, keys=root_ssh_authorized_keys, wipe=True,
                 disk_size=disk_size, cache_dir=cache_dir, tls_verify=tls_verify,
                 authfile=authfile)
        if disk_size:
            parse_size(disk_size, "--disk-size")
        cfg = _image_config(imgref, cache_dir=cache_dir, tls_verify=tls_verify,
                            authfile=authfile)
    # Kernel arguments alone need no kickstart; users and a layout go the kickstart's way.
    karg = [*(karg or []), *(cfg.kargs if cfg else ())]
    ks_text = None
    if cfg is not None and (cfg.users or cfg.shapes_layout):
        from bootc_py.artifacts.build_config import render_kickstart
        from bootc_py.kickstart.source import KickstartText, load

        if root_ssh_authorized_keys or bootloader != "grub":
            raise UsageError("--root-ssh-authorized-keys and --bootloader do not go with the "
                             f"users or layout of {cfg.source}",
                             "add the key to a [[customizations.user]]")
        base = load(kickstart) if kickstart else None
        ks_text = KickstartText(render_kickstart(cfg, base=base.text if base else None,
                                                 root_fstype=rootfs, with_kargs=False),
                                base.name if base else cfg.source,
                                base.base if base else None)
        rootfs = ""  # now in the kickstart's part /
    if disk_size is None and cfg is not None and cfg.disk_minsize:
        disk_size = str(cfg.disk_minsize)
    opts = _options(source_imgref=imgref, target_imgref=target_imgref, stateroot="default",
                    filesystem=rootfs or None, root_size=None, bootloader=bootloader,
                    generic_image=True, karg=karg, keys=root_ssh_authorized_keys, wipe=True,
                    disk_size=disk_size, cache_dir=cache_dir, tls_verify=tls_verify,
                    authfile=authfile)
    if disk_size:
        parse_size(disk_size, "--disk-size")
    install = None
    if kickstart or ks_text is not None:
        from bootc_py.commands.kickstart import build_installer

        install = build_installer(ks_text or kickstart, imgref, target_imgref=target_imgref,
                                  kargs=karg or [], disk_size=opts.disk_size,
                                  cache_dir=cache_dir, tls_verify=tls_verify, authfile=authfile)
    result = build_disk_images(formats, output, opts, install)
    for artifact in result.artifacts:
        typer.echo(f"{artifact.type}: {output / artifact.path} ({artifact.size} bytes, "
                   f"sha256 {artifact.sha256})")


# bootc-image-builder's names for installer media -> the artifact type.
MEDIA_TYPES = {"iso": "iso", "anaconda-iso": "iso", "bootc-installer": "iso",
               "pxe-tar-xz": "pxe-tar-xz"}


def _read_config(config: str | None) -> BuildConfig | None:
    """--config's configuration (every problem one line: ConfigProblems), checked."""
    if config is None:
        return None
    from bootc_py.artifacts import build_config

    return _checked(build_config.load(config))


def _image_config(imgref: str, *, cache_dir: Path | None, tls_verify: str | None,
                  authfile: Path | None) -> BuildConfig | None:
    """The configuration the image carries (/usr/lib/bootc-image-builder/config.toml)."""
    from bootc_py.artifacts import build_config
    from bootc_py.commands.common import pull_options
    from bootc_py.image.ref import parse_imgref
    from bootc_py.image.source import pull
    from bootc_py.installer.preflight import summarize

    image = pull(parse_imgref(imgref), pull_options(cache_dir, tls_verify, authfile))
    found = build_config.embedded(summarize(image).files)
    return _checked(found) if found is not None else None


def _checked(cfg: BuildConfig) -> BuildConfig:
    from bootc_py.installer import kargs

    kargs.check(cfg.kargs, f"{cfg.source} (customizations.kernel.append)")
    for warning in cfg.warnings:
        typer.echo(f"warning: {warning}", err=True)
    return cfg


def _build_medium(kind: str, imgref: str, output: Path, *, kickstart: str | None,
                  cfg: BuildConfig | None, target_imgref: str | None, kargs: tuple[str, ...],
                  payload: bool, cache_dir: Path | None, tls_verify: str | None,
                  authfile: Path | None) -> None:
    from bootc_py.artifacts.disk_image import write_manifest
    from bootc_py.artifacts.iso import build_iso
    from bootc_py.artifacts.live import MediaOptions
    from bootc_py.commands.install import _options
    from bootc_py.installer.prepare import prepare
    from bootc_py.kickstart import source

    text = source.load(kickstart) if kickstart else None
    if cfg is not None:
        from bootc_py.artifacts.build_config import render_kickstart
        from bootc_py.installer.live import DEFAULT_KICKSTART, DEFAULT_KICKSTART_NO_LAYOUT

        if text is not None and cfg.kickstart is not None:
            raise UsageError(f"a kickstart is given twice: --kickstart and {cfg.source}'s "
                             "customizations.installer.kickstart", "keep one of them")
        if cfg.kickstart is not None:
            text = source.KickstartText(cfg.kickstart, f"{cfg.source} (installer.kickstart)",
                                        None)
        if cfg.users or cfg.shapes_layout:  # applied with the kickstart, not instead of it
            base = text.text if text else (DEFAULT_KICKSTART_NO_LAYOUT if cfg.shapes_layout
                                           else DEFAULT_KICKSTART)
            text = source.KickstartText(render_kickstart(cfg, base=base, with_kargs=False),
                                        text.name if text else cfg.source,
                                        text.base if text else None)
        kargs = (*kargs, *cfg.kargs)
    if text is not None:
        from bootc_py.commands.kickstart import translate_kickstart
        from bootc_py.kickstart.translate import KickstartError

        try:  # checked now, against this image, so a bad kickstart never reaches a machine
            translate_kickstart(text, None, False, cache_dir=cache_dir, tls_verify=tls_verify,
                                authfile=authfile, source_imgref=imgref,
                                target_imgref=target_imgref)
        except KickstartError as exc:
            from bootc_py.commands.kickstart import report_problems

            report_problems(exc)
            raise typer.Exit(1) from None
    ks_text = text.text if text else None
    opts = _options(source_imgref=imgref, target_imgref=target_imgref, stateroot="default",
                    filesystem=None, root_size=None, bootloader="grub", generic_image=True,
                    karg=list(kargs), keys=None, wipe=True, disk_size=None,
                    cache_dir=cache_dir, tls_verify=tls_verify, authfile=authfile)
    prepared = prepare(opts)
    media = MediaOptions(payload=payload, kickstart=ks_text,
                         target_imgref=prepared.plan.target, kargs=kargs)
    if cfg is not None:
        media = replace(media, volume_id=cfg.volume_id or media.volume_id,
                        application_id=cfg.application_id, publisher=cfg.publisher,
                        unattended=bool(cfg.unattended))
    if kind == "iso":
        path = build_iso(prepared.image, output, media)
    else:
        from bootc_py.artifacts.pxe import build_pxe

        path = build_pxe(prepared.image, output, media)
    artifact = write_manifest(output, prepared.plan, [(kind, path)])[0]
    typer.echo(f"{kind}: {path} ({artifact.size} bytes, sha256 {artifact.sha256})")
