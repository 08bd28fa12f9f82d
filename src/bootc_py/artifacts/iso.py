"""`build --type iso`: one hybrid installer ISO (BIOS and UEFI, as a CD and written raw to a
USB stick) whose live system is the image itself and which carries the image as an OCI layout,
so the install needs no network (`--no-payload`: a small ISO that installs from the registry).

Layout of the medium (the live system sees it at /run/initramfs/live):
  boot/vmlinuz, boot/initrd.img     the image's kernel, the live initramfs
  boot/grub/grub.cfg, bios.img      GRUB (modules from the image's /usr/lib/grub)
  boot/efi.img                      the ESP image (EFI/BOOT/BOOTX64.EFI), also a partition
  LiveOS/squashfs.img               the live root
  bootc-py/install.json             what the live installer installs (installer/live.py)
  bootc-py/payload/                 the image (OCI layout), unless --no-payload
  bootc-py/ks.cfg                   the embedded kickstart (--kickstart), if any
GRUB's own rules (the FACTS of the verified chain): images from grub-mkimage, found at boot by
`search --file` on the install record, tied together by xorriso with GRUB's hybrid MBR.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from bootc_py import log as steplog
from bootc_py.artifacts import live as livesys
from bootc_py.artifacts.live import (
    CONSOLE_ARGS,
    INSTALL_RECORD,
    LIVE_ARGS,
    MediaOptions,
    write_medium,
)
from bootc_py.bootloader.grub import check_syntax
from bootc_py.errors import ArtifactError
from bootc_py.image.source import Image
from bootc_py.run import run

log = logging.getLogger(__name__)

ISO_DIR = "bootiso"
ISO_NAME = "install.iso"
GRUB_MODULES = ["normal", "configfile", "linux", "search", "search_fs_file", "search_label",
                "iso9660", "part_gpt", "part_msdos", "fat", "ext2", "serial", "terminal",
                "echo", "test", "true", "sleep", "gzio", "minicmd"]
BIOS_MODULES = ["biosdisk", *GRUB_MODULES]
EFI_MODULES = ["all_video", "efi_gop", *GRUB_MODULES]


def render_grub_cfg(volid: str, *, timeout: int, title: str,
                    live_kargs: tuple[str, ...] = ()) -> str:
    """The menu: install (default) and a rescue entry that only starts the live system."""
    base = f"root=live:CDLABEL={volid} {LIVE_ARGS} {CONSOLE_ARGS}"
    extra = "".join(f" {k}" for k in live_kargs)
    safe = title.replace("'", "")
    return (
        "# bootc-py installer medium\n"
        "serial --unit=0 --speed=115200\n"
        "terminal_input console serial\n"
        "terminal_output console serial\n"
        f"set timeout={timeout}\n"
        "set default=0\n"
        f"menuentry 'Install {safe}' {{\n"
        f"    linux /boot/vmlinuz {base} bootc-py.live-install{extra}\n"
        "    initrd /boot/initrd.img\n"
        "}\n"
        f"menuentry 'Rescue: start {safe} without installing' {{\n"
        f"    linux /boot/vmlinuz {base}{extra}\n"
        "    initrd /boot/initrd.img\n"
        "}\n")


def render_early_cfg() -> str:
    """Embedded in the GRUB images: find the medium (CD or USB stick) by its install record."""
    return (f"search --no-floppy --file --set=root /{INSTALL_RECORD}\n"
            "set prefix=($root)/boot/grub\n"
            "configfile ($root)/boot/grub/grub.cfg\n")


def _grub_dir(rootfs: Path, platform: str) -> Path:
    path = rootfs / "usr/lib/grub" / platform
    if not path.is_dir():
        raise ArtifactError(f"the image has no GRUB for {platform} (/usr/lib/grub/{platform})",
                            "add grub-pc-bin and grub-efi-amd64-bin to the image")
    return path


def _grub_images(rootfs: Path, tree: Path, work: Path) -> Path:
    """bios.img in the tree and efi.img (a FAT ESP image) in it too; returns boot_hybrid.img."""
    early = work / "early.cfg"
    early.write_text(render_early_cfg())
    bios_dir = _grub_dir(rootfs, "i386-pc")
    efi_dir = _grub_dir(rootfs, "x86_64-efi")
    grub = tree / "boot/grub"
    grub.mkdir(parents=True, exist_ok=True)
    run(["grub-mkimage", "-d", str(bios_dir), "-O", "i386-pc-eltorito", "-o",
         str(grub / "bios.img"), "-p", "/boot/grub", "-c", str(early), *BIOS_MODULES])
    efi = work / "BOOTX64.EFI"
    run(["grub-mkimage", "-d", str(efi_dir), "-O", "x86_64-efi", "-o", str(efi),
         "-p", "/boot/grub", "-c", str(early), *EFI_MODULES])
    esp = tree / "boot/efi.img"
    kib = (efi.stat().st_size >> 10) + 1024
    run(["mkfs.vfat", "-C", "-n", "BOOTCPY-ESP", str(esp), str(kib)], quiet=True)
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    run(["mmd", "-i", str(esp), "::/EFI", "::/EFI/BOOT"], env=env)
    run(["mcopy", "-i", str(esp), str(efi), "::/EFI/BOOT/BOOTX64.EFI"], env=env)
    hybrid = bios_dir / "boot_hybrid.img"
    if not hybrid.is_file():
        raise ArtifactError(f"the image's GRUB has no {hybrid.name}", "add grub-pc-bin")
    return hybrid


def _xorriso(tree: Path, out: Path, opts: MediaOptions, hybrid: Path) -> None:
    ids = [*(["-A", opts.application_id] if opts.application_id else []),
           *(["-publisher", opts.publisher] if opts.publisher else [])]
    run(["xorriso", "-as", "mkisofs", "-iso-level", "3", "-R", "-V", opts.volume_id, *ids,
         "-o", str(out),
         "-b", "boot/grub/bios.img", "-no-emul-boot", "-boot-load-size", "4",
         "-boot-info-table", "--grub2-boot-info", "--grub2-mbr", str(hybrid),
         "--efi-boot", "boot/efi.img", "-efi-boot-part", "--efi-boot-image",
         "--protective-msdos-label", str(tree)], quiet=True, timeout=3600, writes=out)


def build_iso(image: Image, output: Path, opts: MediaOptions) -> Path:
    """Write output/bootiso/install.iso; nothing is left behind on failure."""
    with livesys.medium_build(output, ISO_DIR, ISO_NAME) as (work, partial):
        tree = work / "tree"
        (tree / "boot").mkdir(parents=True)
        with livesys.live_system(image, work) as live:
            shutil.copyfile(live.kernel, tree / "boot/vmlinuz")
            with livesys.initrd_alongside(live, tree / "boot/initrd.img"):
                with steplog.step("grub", "Writing GRUB for BIOS and UEFI"):
                    hybrid_src = _grub_images(live.rootfs, tree, work)
                    hybrid = work / "boot_hybrid.img"
                    shutil.copyfile(hybrid_src, hybrid)
                    title = (image.labels.get("org.opencontainers.image.title")
                             or str(image.ref))
                    (tree / "boot/grub/grub.cfg").write_text(render_grub_cfg(
                        opts.volume_id, timeout=livesys.menu_timeout(live.rootfs),
                        title=title, live_kargs=opts.live_kargs))
                    check_syntax(tree / "boot/grub/grub.cfg", required=True)
                livesys.squash(live, tree / "LiveOS/squashfs.img")
        write_medium(image, tree, opts)
        with steplog.step("iso", f"Writing {ISO_NAME} (xorriso)"):
            _xorriso(tree, partial, opts, hybrid)
    return output / ISO_DIR / ISO_NAME
