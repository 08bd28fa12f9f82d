"""`build --type pxe-tar-xz`: the installer's live system as a network boot bundle, at
bootc-image-builder's path (xz/pxe.tar.xz) and with its file names (vmlinuz, initrd.img,
rootfs.img, grub.cfg), plus an iPXE script (boot.ipxe).

There is no medium to read at install time, so the install record, the payload (unless
--no-payload) and the kickstart ride inside the live root (/usr/lib/bootc-py/medium). The live
root (rootfs.img, a squashfs) reaches the initramfs as a second initrd that the boot loader
wraps into a cpio archive (iPXE `initrd rootfs.img /rootfs.img`, GRUB `newc:`), so the same
`root=live:/rootfs.img` works over TFTP and HTTP, and every file is named relative to where
the script came from: a TFTP or HTTP root holding the unpacked bundle boots as is.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import tarfile
from pathlib import Path

from bootc_py import log as steplog
from bootc_py.artifacts import live as livesys
from bootc_py.artifacts.live import CONSOLE_ARGS, IN_LIVE_ROOT, LIVE_ARGS, MediaOptions
from bootc_py.artifacts.xz_store import XzWriter
from bootc_py.bootloader.grub import check_syntax
from bootc_py.image.source import Image
from bootc_py.nospace import no_space

log = logging.getLogger(__name__)

PXE_DIR = "xz"
PXE_NAME = "pxe.tar.xz"
FILES = ("vmlinuz", "initrd.img", "rootfs.img", "boot.ipxe", "grub.cfg")


def kernel_args(live_kargs: tuple[str, ...] = (), *, install: bool = True) -> str:
    args = f"root=live:/rootfs.img {LIVE_ARGS} {CONSOLE_ARGS}"
    if install:
        args += " bootc-py.live-install"
    return args + "".join(f" {k}" for k in live_kargs)


def render_ipxe(live_kargs: tuple[str, ...] = ()) -> str:
    """Names relative to the script's own URL; `initrd=` names both initrds for the EFI stub."""
    return ("#!ipxe\n"
            "# bootc-py PXE bundle: serve this directory over TFTP or HTTP and chain this file.\n"
            "kernel vmlinuz initrd=initrd.img initrd=rootfs.img "
            f"{kernel_args(live_kargs)}\n"
            "initrd initrd.img\n"
            "initrd rootfs.img /rootfs.img\n"
            "boot\n")


def render_grub_cfg(title: str, *, timeout: int, live_kargs: tuple[str, ...] = ()) -> str:
    """For GRUB netboot (grub-mknetdir), paths relative to its TFTP root."""
    safe = title.replace("'", "")
    entries = []
    for name, install in ((f"Install {safe}", True),
                          (f"Rescue: start {safe} without installing", False)):
        entries.append(f"menuentry '{name}' {{\n"
                       f"    linux vmlinuz {kernel_args(live_kargs, install=install)}\n"
                       "    initrd initrd.img newc:/rootfs.img:rootfs.img\n"
                       "}\n")
    return (f"# bootc-py PXE bundle\nset timeout={timeout}\nset default=0\n"
            + "".join(entries))


def build_pxe(image: Image, output: Path, opts: MediaOptions) -> Path:
    """Write output/xz/pxe.tar.xz; nothing is left behind on failure."""
    with livesys.medium_build(output, PXE_DIR, PXE_NAME) as (work, partial):
        bundle = work / "bundle"
        bundle.mkdir()
        extra = image.size if opts.payload else 0  # the payload rides in the squashfs
        with livesys.live_system(image, work, extra) as live:
            shutil.copyfile(live.kernel, bundle / "vmlinuz")
            # Into the tree before dracut's overlay of it is mounted: it must not change after.
            livesys.write_medium(image, livesys.fresh_dir(live.rootfs, IN_LIVE_ROOT),
                                 opts)
            with livesys.initrd_alongside(live, bundle / "initrd.img"):
                title = image.labels.get("org.opencontainers.image.title") or str(image.ref)
                (bundle / "boot.ipxe").write_text(render_ipxe(opts.live_kargs))
                (bundle / "grub.cfg").write_text(render_grub_cfg(
                    title, timeout=livesys.menu_timeout(live.rootfs),
                    live_kargs=opts.live_kargs))
                check_syntax(bundle / "grub.cfg", required=True)
                livesys.squash(live, bundle / "rootfs.img")
        with steplog.step("tar", f"Writing {PXE_NAME}"):
            write_bundle(bundle, partial)
    return output / PXE_DIR / PXE_NAME


def write_bundle(bundle: Path, out: Path) -> None:
    """FILES of `bundle` as a tar owned by root, in .xz because bootc-image-builder names it
    .tar.xz. Its squashfs and payload are compressed already: xz -0 took 25 s of the sample's
    37 s build to save 1%; blocks that compress (the initramfs) still are (xz_store)."""
    jobs = os.cpu_count() or 1
    try:
        with open(out, "wb") as f, XzWriter(f, jobs) as xz, \
                tarfile.open(fileobj=xz, mode="w|",  # type: ignore[call-overload]
                             format=tarfile.PAX_FORMAT) as tar:
            # A stream ("w|"): tarfile only writes to it (typeshed asks for read and seek).
            for name in FILES:
                info = tar.gettarinfo(bundle / name, arcname=name)
                info.uid = info.gid = 0
                info.uname = info.gname = "root"
                with open(bundle / name, "rb") as member:
                    tar.addfile(info, member)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        raise no_space(out.parent, None, f"writing {out.name}") from exc
