"""Everything an install resolves before writing: which image, is it bootable, how to install.

Without --source-imgref the source is the image bootc-py runs in, as with bootc: inside a
container started (privileged) from a bootable image, podman's /run/.containerenv names it and
the host's container storage (mounted at /var/lib/containers) holds it; on a host booted from a
bootc-py install, it is the booted image (pinned to its digest when it came from a registry).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from bootc_py import lint
from bootc_py import log as steplog
from bootc_py.errors import LintError, UsageError
from bootc_py.image.ref import Transport, parse_imgref
from bootc_py.image.source import Image, pull
from bootc_py.installer import config as install_config
from bootc_py.installer import kargs as karg_check
from bootc_py.installer.plan import InstallOptions, InstallPlan, choose_bootloaders
from bootc_py.installer.preflight import ImageSummary, summarize
from bootc_py.store.sysroot import Sysroot

log = logging.getLogger(__name__)

CONTAINERENV = Path("/run/.containerenv")
EFI_FIRMWARE = Path("/sys/firmware/efi")
OSTREE_BOOTED = Path("/run/ostree-booted")
STORAGE = Path("/var/lib/containers/storage")


@dataclass(frozen=True)
class PreparedImage:
    image: Image
    summary: ImageSummary
    plan: InstallPlan  # without a partition plan yet


def _containerenv_value(text: str, key: str) -> str | None:
    match = re.search(rf'^{key}="(.*)"$', text, re.MULTILINE)
    return match.group(1) if match and match.group(1) else None


def _booted_image_ref() -> str | None:
    """On a host booted from a bootc-py install: the booted image, pinned to its digest."""
    if not OSTREE_BOOTED.exists():
        return None
    booted = Sysroot(Path("/")).booted()
    if booted is None or booted.origin is None:
        return None
    ref = booted.origin.ref
    if booted.origin.manifest_digest and ref.transport is Transport.REGISTRY:
        ref = ref.with_digest(booted.origin.manifest_digest)
    return str(ref)


@dataclass(frozen=True)
class RunningImage:
    """The image bootc-py runs in: where to read it, and what later updates follow."""

    source: str
    target: str | None = None


def running_image(containerenv: Path = CONTAINERENV, storage: Path = STORAGE) -> RunningImage:
    """The image this process runs in, or a UsageError saying how to name one."""
    if containerenv.is_file():
        text = containerenv.read_text()
        image_id = _containerenv_value(text, "imageid")
        if image_id is None:
            raise UsageError("running in a container, but /run/.containerenv does not name the "
                             "image", "run it with podman --privileged, or give --source-imgref")
        if not storage.is_dir():
            raise UsageError(f"the host's container storage is not mounted at {storage}",
                             "add -v /var/lib/containers:/var/lib/containers to podman run")
        name = _containerenv_value(text, "image")
        # Updates follow the image's name (as bootc does), not the local storage id.
        target = f"docker://{name}" if name and not name.startswith("sha256:") else None
        return RunningImage(f"containers-storage:{image_id.removeprefix('sha256:')}", target)
    booted = _booted_image_ref()
    if booted:
        return RunningImage(booted)
    raise UsageError("no source image: bootc-py is not running inside a bootable container",
                     "give --source-imgref IMGREF (e.g. docker://registry/name:tag or oci:DIR)")


def prepare(opts: InstallOptions) -> PreparedImage:
    running = None if opts.source_imgref else running_image()
    source = opts.source_imgref or (running.source if running else "")
    ref = parse_imgref(source)
    karg_check.check(opts.kargs, "--karg")  # before the pull: these need no image bytes
    if opts.target_imgref:
        parse_imgref(opts.target_imgref)
    image = pull(ref, opts.pull)  # a named, timed step of its own, with byte progress
    with steplog.step("preflight", "Checking the image before touching the target"):
        summary = summarize(image)
        problems = lint.check(summary, labels=image.labels, initramfs_ok=summary.initramfs_ok)
        errors = lint.errors(problems)
        if errors:
            more = f" (and {len(errors) - 1} more; see 'bootc-py container lint')" \
                if len(errors) > 1 else ""
            raise LintError(f"{ref} is not a bootable image: {errors[0].message}{more}")
        warnings = tuple(p.message for p in problems if p.severity is lint.Severity.WARNING)
        for warning in warnings:
            log.warning("%s", warning)
        cfg = install_config.load(summary.files)
        karg_check.check(cfg.kargs, f"{ref}'s /{install_config.INSTALL_GLOB}")
        karg_check.check(cfg.kargs_d, f"{ref}'s /{install_config.KARGS_GLOB}")
    filesystem = opts.filesystem or cfg.root_fs_type or "xfs"
    target = opts.target_imgref or (running.target if running else None) or str(ref)
    plan = InstallPlan(
        source=str(ref), target=str(parse_imgref(target)), manifest_digest=image.manifest_digest,
        stateroot=opts.stateroot, filesystem=filesystem,
        bootloaders=choose_bootloaders(opts.bootloader, generic=opts.generic_image,
                                       efi_firmware=EFI_FIRMWARE.is_dir()),
        kargs=(*cfg.kargs, *cfg.kargs_d, *opts.kargs), config=cfg, warnings=warnings)
    return PreparedImage(image=image, summary=summary, plan=plan)
