"""The live system of an installer ISO or PXE bundle, made from the image itself.

Its kernel is the image's; its initramfs is built at build time by the image's own dracut (in
a chroot on an overlay of the unpacked image, while the squashfs is written) with
dmsquash-live, so the image must carry dracut-live; its root is the image's rootfs as a
squashfs, mounted read-only under a RAM overlay at boot
(`root=live:CDLABEL=... rd.live.image rd.live.overlay.overlayfs=1`). The installer is the
image's own bootc-py, started by bootc-py-live-install.service when the kernel command line
says `bootc-py.live-install`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from bootc_py import log as steplog
from bootc_py.artifacts.oci_payload import write_payload
from bootc_py.artifacts.scratch import scratch_space
from bootc_py.disk.mount import Mount
from bootc_py.errors import ArtifactError, LintError, UsageError
from bootc_py.image.cache import DEFAULT_CACHE_DIR, SUMMARIES
from bootc_py.image.flatten import unpack
from bootc_py.image.source import Image
from bootc_py.installer import config as install_config
from bootc_py.installer.preflight import keep_summary, summarize
from bootc_py.run import run
from bootc_py.store.layout import no_symlink_parents

log = logging.getLogger(__name__)

DMSQUASH_LIVE = "usr/lib/dracut/modules.d/90dmsquash-live"
LIVE_UNIT = "bootc-py-live-install.service"
UNIT_SOURCE = Path(__file__).resolve().parents[1] / "data" / "systemd" / LIVE_UNIT
# What a live medium needs from the initramfs: the media (CD, USB, virtio, NVMe, SATA), the
# filesystems (iso9660 is `isofs`), squashfs and the overlay. Missing ones are skipped by dracut.
LIVE_DRIVERS = ("virtio_scsi virtio_blk virtio_pci sr_mod cdrom isofs squashfs overlay loop "
                "sd_mod ahci nvme usb_storage uas xhci_pci ehci_pci")
# dracut 059's overlayfs live root fails ("failed to resolve '/run/overlayfs'") unless these
# exist before the root is mounted: a tiny dracut module of our own creates them.
OWN_MODULE = "usr/lib/dracut/modules.d/95bootc-py-live"
MODULE_SETUP = """#!/bin/bash
# bootc-py: written into the image copy an installer medium is built from.
check() { return 255; }
depends() { echo dmsquash-live; }
install() { inst_hook pre-mount 01 "$moddir/bootc-py-overlay-dirs.sh"; }
"""
OVERLAY_DIRS_HOOK = "#!/bin/sh\nmkdir -p /run/overlayfs /run/ovlwork\n"
INITRD_IN_CHROOT = "tmp/bootc-py-live-initrd.img"
# What the live installer reads (installer/live.py), relative to the medium: the ISO itself,
# or the live root's /usr/lib/bootc-py/medium for a PXE bundle (no medium to read there).
INSTALL_RECORD = "bootc-py/install.json"
PAYLOAD_DIR = "bootc-py/payload"
KICKSTART = "bootc-py/ks.cfg"
PAYLOAD_TAG = "install"
IN_LIVE_ROOT = "usr/lib/bootc-py/medium"
LIVE_ARGS = "rd.live.image rd.live.overlay.overlayfs=1"
# The console: the screen, and the serial port last so the installer's progress (on
# /dev/console) reaches a headless machine's serial console too.
CONSOLE_ARGS = "console=tty0 console=ttyS0,115200n8"
DEFAULT_VOLID = "BOOTC-PY-INSTALL"


@dataclass(frozen=True)
class MediaOptions:
    """What an installer medium (ISO or PXE bundle) carries besides the live system."""

    volume_id: str = DEFAULT_VOLID
    application_id: str | None = None     # the ISO's, from config.toml's customizations.iso
    publisher: str | None = None
    payload: bool = True
    kickstart: str | None = None          # the text to embed
    target_imgref: str | None = None      # what the installed system updates from
    kargs: tuple[str, ...] = ()           # for the installed system
    live_kargs: tuple[str, ...] = ()      # for the live system
    unattended: bool = False              # never ask at the console (config.toml's installer)

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Z0-9_-]{1,32}", self.volume_id):
            raise UsageError(f"volume id '{self.volume_id}' is not an ISO 9660 volume id",
                             "use up to 32 of A-Z, 0-9, _ and -")


@dataclass(frozen=True)
class LiveSystem:
    rootfs: Path      # the unpacked image (with the live unit), where GRUB's modules are read
    kernel: Path
    kver: str
    scratch: Path     # the space rootfs is in (RAM when it fits), dracut's overlay beside it


def menu_timeout(rootfs: Path) -> int:
    """The image's own menu timeout (bootloader-timeout), else 5 s: long enough to pick the
    rescue entry, short enough for an unattended install."""
    timeout = install_config.load_tree(rootfs).bootloader_timeout
    return 5 if timeout is None else timeout


def _kernel(rootfs: Path, ref: str) -> tuple[str, Path]:
    kernels = sorted((rootfs / "usr/lib/modules").glob("*/vmlinuz"))
    if len(kernels) != 1:
        raise ArtifactError(f"{ref} has {len(kernels)} kernels under /usr/lib/modules",
                            "a bootable image carries exactly one")
    return kernels[0].parent.name, kernels[0]


def check_image(rootfs: Path, ref: str) -> None:
    """What the live system needs from the image, each missing piece a one-line refusal."""
    if not (rootfs / DMSQUASH_LIVE).is_dir():
        raise ArtifactError(f"{ref} has no dracut-live (/{DMSQUASH_LIVE}): its initramfs "
                            "cannot boot a live medium",
                            "add the dracut-live package to the image")
    if not (rootfs / "usr/bin/bootc-py").exists():
        raise ArtifactError(f"{ref} carries no bootc-py (/usr/bin/bootc-py): the live "
                            "installer is the image's own", "install bootc-py in the image")
    if not any((rootfs / d / "dracut").exists() for d in ("usr/bin", "usr/sbin")):
        raise ArtifactError(f"{ref} has no dracut (/usr/bin/dracut): the live initramfs is "
                            "built with the image's own", "add dracut to the image")


def _add_live_unit(rootfs: Path) -> None:
    """The image's own unit when it ships one; else this bootc-py's, enabled. (The tree is
    the image's: no write may follow one of its symlinks out of it.)"""
    unit = no_symlink_parents(rootfs, f"usr/lib/systemd/system/{LIVE_UNIT}")
    if not (unit.is_symlink() or unit.exists()):
        unit.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(UNIT_SOURCE, unit)
    link = no_symlink_parents(rootfs, f"etc/systemd/system/multi-user.target.wants/{LIVE_UNIT}")
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.is_symlink():
        link.symlink_to(f"/usr/lib/systemd/system/{LIVE_UNIT}")


def fresh_dir(rootfs: Path, rel: str) -> Path:
    """rootfs/rel as a new empty directory, whatever the image had there, reached through
    real directories only."""
    path = no_symlink_parents(rootfs, rel)
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def _keep_summary(image: Image, rootfs: Path) -> None:
    """The payload's preflight summary into the live root's cache: the live installer's
    preflight of these layers need not scan again. Only a shortcut: skipped, not refused,
    where the image has a symlink on the way."""
    cache = DEFAULT_CACHE_DIR.relative_to("/")
    try:
        no_symlink_parents(rootfs, f"{cache}/{SUMMARIES}/x")
    except LintError as exc:
        log.info("not keeping the image summary in the live root: %s", exc)
        return
    keep_summary(image, rootfs / cache)


def _build_initrd(live: LiveSystem, out: Path) -> None:
    """The image's dracut, in a chroot on an overlay of the tree: what dracut writes (our
    module, its temporary files, the image) goes to the overlay, so the tree itself, which
    mksquashfs reads meanwhile, never changes."""
    for sub in ("dracut-upper", "dracut-work"):
        (live.scratch / sub).mkdir()
    root = live.scratch / "dracut-root"
    lower = live.rootfs.relative_to(live.scratch)
    with ExitStack() as stack:
        # Relative paths (to `scratch`): an output path with ',' or ':' cannot break them.
        stack.enter_context(Mount("overlay", root, fstype="overlay", cwd=live.scratch, options=(
            f"lowerdir={lower}", "upperdir=dracut-upper", "workdir=dracut-work")))
        module = root / OWN_MODULE
        module.mkdir(parents=True, exist_ok=True)
        (module / "module-setup.sh").write_text(MODULE_SETUP)
        (module / "bootc-py-overlay-dirs.sh").write_text(OVERLAY_DIRS_HOOK)
        for f in module.iterdir():
            f.chmod(0o755)
        for fs, where in (("proc", "proc"), ("sysfs", "sys")):
            stack.enter_context(Mount(fs, root / where, fstype=fs))
        stack.enter_context(Mount("/dev", root / "dev", options=["bind"]))
        with steplog.step("live-initramfs", "Building the live initramfs (the image's dracut, "
                          "dmsquash-live)"):
            run(["chroot", str(root), "dracut", "--force", "--quiet", "--no-hostonly",
                 "--add", "dmsquash-live bootc-py-live", "--omit", "plymouth",
                 "--add-drivers", LIVE_DRIVERS, "--kver", live.kver, f"/{INITRD_IN_CHROOT}"],
                timeout=1800)
        shutil.move(root / INITRD_IN_CHROOT, out)


@contextmanager
def initrd_alongside(live: LiveSystem, out: Path) -> Iterator[None]:
    """Build the live initramfs into `out` while the block runs (the squashfs): dracut is
    mostly one core's shell work, mksquashfs compresses on the others (3.1 + 2.0 s one after
    the other, 4.2 s side by side, measured on the sample). The tree must not change meanwhile.
    Waits for dracut on the way out, whatever the block did; then raises dracut's error."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="dracut") as pool:
        job = pool.submit(_build_initrd, live, out)
        try:
            yield
        except BaseException:
            wait([job])  # its mounts are gone before the caller's cleanup runs
            if job.exception() is not None:
                log.info("the live initramfs failed too: %s", job.exception())
            raise
        job.result()


@contextmanager
def medium_build(output: Path, directory: str, name: str) -> Iterator[tuple[Path, Path]]:
    """(work dir, partial file) for writing output/directory/name: the work dir is removed
    afterwards, the partial file renamed into place only if the block succeeds, so a failed
    or interrupted build leaves neither a half-written artifact nor its temporary tree."""
    out_dir = output / directory
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / name
    out.unlink(missing_ok=True)
    partial = out_dir / f".{name}.partial"
    with tempfile.TemporaryDirectory(prefix=f".bootc-py-{directory}-", dir=output) as tmp:
        try:
            yield Path(tmp), partial
            partial.rename(out)
        finally:
            partial.unlink(missing_ok=True)


# Beyond the unpacked tree: dracut's copy of the initramfs tree and the image it writes
# (about 50 MB each for the sample), with room to spare.
DRACUT_ROOM = 512 << 20


@contextmanager
def live_system(image: Image, work: Path, extra: int = 0) -> Iterator[LiveSystem]:
    """`image` unpacked in scratch space under `work` (RAM when it fits), with the live unit;
    `extra`: the bytes the caller adds to the tree (a PXE bundle's payload). The space is
    gone after the block: squash it (and build the initramfs) inside."""
    need = summarize(image).unpacked_bytes + extra + DRACUT_ROOM
    with scratch_space(work, need) as space:
        rootfs = space / "rootfs"
        unpack(image, rootfs)
        check_image(rootfs, str(image.ref))
        _keep_summary(image, rootfs)
        kver, kernel = _kernel(rootfs, str(image.ref))
        _add_live_unit(rootfs)
        yield LiveSystem(rootfs=rootfs, kernel=kernel, kver=kver, scratch=space)


def squash(live: LiveSystem, out: Path) -> Path:
    """The live root: the image's rootfs as a squashfs (zstd level 3, 1 MiB blocks: 16x
    faster to write than zstd's default 15 for 7% more bytes, measured on the sample).
    One core is left to dracut, which runs alongside (initrd_alongside): on 2 cores that
    finished both in 3.5 s instead of 4.0 s, and mksquashfs alone took 1.5 s, not 2.0 s."""
    out.parent.mkdir(parents=True, exist_ok=True)
    processors = max(1, (os.cpu_count() or 1) - 1)
    with steplog.step("squashfs", "Writing the live root (squashfs)"):
        run(["mksquashfs", str(live.rootfs), str(out), "-noappend", "-quiet", "-no-progress",
             "-comp", "zstd", "-Xcompression-level", "3", "-b", "1M", "-xattrs",
             "-processors", str(processors)], timeout=3600, writes=out)
    return out


def install_record(image: Image, opts: MediaOptions,
                   payload_digest: str | None) -> dict[str, object]:
    """What the live installer reads (installer/live.py)."""
    return {
        "image": str(image.ref),
        "digest": payload_digest or image.manifest_digest,
        "payload": f"{PAYLOAD_DIR}:{PAYLOAD_TAG}" if payload_digest else None,
        "target-imgref": opts.target_imgref or str(image.ref),
        "kickstart": KICKSTART if opts.kickstart else None,
        "kargs": list(opts.kargs),
        "unattended": opts.unattended,
    }


def write_medium(image: Image, dest: Path, opts: MediaOptions) -> str | None:
    """The install record, the payload (unless --no-payload) and the kickstart under `dest`;
    returns the payload's manifest digest."""
    digest = None
    (dest / "bootc-py").mkdir(parents=True, exist_ok=True)
    if opts.payload:
        with steplog.step("payload", "Embedding the image (OCI layout)"):
            digest = write_payload(image, dest / PAYLOAD_DIR, PAYLOAD_TAG)
    if opts.kickstart:
        (dest / KICKSTART).write_text(opts.kickstart)
    (dest / INSTALL_RECORD).write_text(
        json.dumps(install_record(image, opts, digest), indent=2) + "\n")
    return digest
