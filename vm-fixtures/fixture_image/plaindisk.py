"""A plain (non-ostree) Debian disk, the kind a cloud provider ships: the machine that
`bootc-py install to-existing-root` takes over.

GPT with a BIOS boot partition, an ESP and one ext4 root holding /boot (kernel + initramfs-tools
initrd in /boot, GRUB in /boot/grub), so it boots under BIOS (GRUB's core image) and UEFI (a
GRUB EFI binary at the fallback path and at EFI/debian/grubx64.efi). The ESP is written with
mtools: this host's kernel has no vfat. The guest check unit (vm-fixtures/guest/) is installed
and enabled, so vmharness.boot_check works on it; the report's `variant` is "plain".

Cached as a qcow2 under the fixture cache (kind "plain-disk"), keyed by vm-fixtures/plain/,
the guest files and this module. Boot an overlay of it, never the cached file.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fixture_image.bootclayer import CHECK_UNIT, install_unit
from fixture_image.cache import Cache, LayerRecord, mounts_under
from fixture_image.errors import FixtureError
from fixture_image.oci import Blob
from fixture_image.oslayer import MERGED_USR_HOOK, _empty_dir
from fixture_image.proc import run, say, step
from fixture_image.recipe import FIXTURES, FORMAT, GUEST, SUITE, _hash_files, read_list

PLAIN = FIXTURES / "plain"
KIND = "plain-disk"
DISK_MIB = 4096
ESP_MIB = 100
# Fixed identities, so the disk's fstab and grub.cfg are written before the filesystems exist.
ROOT_UUID = "6a1f0c4e-8d1b-4c55-9a0e-b00c0a11ce01"
ESP_VOLID = "B00CE5B0"
ESP_UUID = "B00C-E5B0"
VARIANT = "plain"
# initramfs-tools: only the drivers a virtio machine needs (a "most" initrd is 3x the size and
# slower to unpack under TCG); written before the kernel's postinst builds the initrd.
INITRAMFS_CONF = "MODULES=list\n"
INITRAMFS_MODULES = "virtio_pci\nvirtio_blk\nvirtio_scsi\nsd_mod\ncrc32c_generic\n"
BIOS_BOOT = "21686148-6449-6E6F-744E-656564454649"
ESP = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
LINUX = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
EFI_MODULES = ("part_gpt", "fat", "ext2", "normal", "linux", "configfile", "search",
               "search_fs_uuid", "echo", "test", "serial", "terminal", "efi_gop", "all_video",
               "gzio", "boot", "ls", "cat", "reboot", "halt", "loadenv", "sleep")


def plain_disk_key() -> str:
    h = hashlib.sha256(f"plain-disk\0{FORMAT}\0{SUITE}\0{DISK_MIB}\0".encode())
    here = Path(__file__).resolve().parent
    _hash_files(h, FIXTURES, [*PLAIN.glob("*"), *GUEST.rglob("*"), here / "plaindisk.py",
                              here / "bootclayer.py"])
    return h.hexdigest()[:24]


def mmdebstrap_argv(rootfs: Path) -> list[str]:
    """No mirror argument: the machine's apt sources are used (as for the sample image)."""
    packages = read_list(PLAIN / "packages.txt")
    conf = "etc/initramfs-tools/conf.d/bootc-py-fixture.conf"
    return [
        "mmdebstrap", "--variant=minbase", "--mode=root", f"--hook-dir={MERGED_USR_HOOK}",
        "--aptopt=APT::Install-Recommends \"false\"",
        *(f"--dpkgopt={opt}" for opt in read_list(FIXTURES / "recipe/dpkg-excludes.txt")),
        f'--essential-hook=mkdir -p "$1/etc/initramfs-tools/conf.d" && '
        f"printf '{INITRAMFS_CONF}' > \"$1/{conf}\" && "
        f"printf '{INITRAMFS_MODULES}' > \"$1/etc/initramfs-tools/modules\"",
        f"--include={','.join(packages)}",
        f"--customize-hook=upload {PLAIN / 'customize.sh'} /tmp/customize.sh",
        '--customize-hook=chroot "$1" /bin/sh /tmp/customize.sh',
        '--customize-hook=rm -f "$1/tmp/customize.sh"',
        SUITE, str(rootfs),
    ]


def grub_cfg(kver: str) -> str:
    """The plain system's menu: one entry, serial console, boots at once."""
    return (
        "# bootc-py plain fixture disk (a stock Debian system's GRUB menu)\n"
        "set timeout=0\nset default=0\n"
        "if serial --unit=0 --speed=115200; then\n"
        "    terminal_input console serial\n    terminal_output console serial\nfi\n"
        "insmod part_gpt\ninsmod ext2\n"
        f"search --no-floppy --fs-uuid --set=root {ROOT_UUID}\n"
        "menuentry 'Debian GNU/Linux' {\n"
        f"    linux /boot/vmlinuz-{kver} root=UUID={ROOT_UUID} ro console=ttyS0,115200\n"
        f"    initrd /boot/initrd.img-{kver}\n}}\n")


def early_cfg() -> str:
    return (f"search --no-floppy --fs-uuid --set=root {ROOT_UUID}\n"
            "set prefix=($root)/boot/grub\nconfigfile $prefix/grub.cfg\n")


def finish_tree(rootfs: Path) -> dict[str, Any]:
    """fstab, GRUB's menu, the check unit and the variant marker; returns the facts."""
    if mounts_under(rootfs):
        raise FixtureError(f"mmdebstrap left mounts under {rootfs}: {mounts_under(rootfs)}")
    _empty_dir(rootfs / "dev", 0o755)
    _empty_dir(rootfs / "run", 0o755)
    _empty_dir(rootfs / "tmp", 0o1777)
    kernels = sorted(p.name.removeprefix("vmlinuz-") for p in (rootfs / "boot").glob("vmlinuz-*"))
    if len(kernels) != 1 or not (rootfs / f"boot/initrd.img-{kernels[0]}").is_file():
        raise FixtureError(f"expected one kernel with its initrd in /boot, found {kernels}")
    kver = kernels[0]
    (rootfs / "etc/fstab").write_text(
        "# bootc-py plain fixture disk\n"
        f"UUID={ROOT_UUID} / ext4 errors=remount-ro 0 1\n"
        # nofail + a long device timeout: a slow TCG boot must not end in emergency mode.
        f"UUID={ESP_UUID} /boot/efi vfat umask=0077,nofail,x-systemd.device-timeout=600s 0 1\n")
    (rootfs / "boot/efi").mkdir(exist_ok=True)
    (rootfs / "boot/grub").mkdir(exist_ok=True)
    (rootfs / "boot/grub/grub.cfg").write_text(grub_cfg(kver))
    marker = rootfs / "usr/share/bootc-py-fixture/variant"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(VARIANT + "\n")
    check = rootfs / "usr/lib/bootc-py-fixture/check.py"
    check.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(GUEST / "check.py", check)
    check.chmod(0o755)
    install_unit(rootfs, GUEST / CHECK_UNIT)
    packages = sorted(
        line.replace("\t", "=")
        for line in run(["dpkg-query", f"--admindir={rootfs}/var/lib/dpkg", "-W",
                         "-f=${Package}\t${Version}\n"]).splitlines() if line)
    return {"kver": kver, "packages": packages}


@contextlib.contextmanager
def _loop(disk: Path) -> Iterator[str]:
    dev = run(["losetup", "--find", "--show", str(disk)]).strip()
    try:
        run(["partx", "--add", dev])
        yield dev
    finally:
        if Path(f"{dev}p1").exists():
            run(["partx", "--delete", dev])
        run(["losetup", "--detach", dev])


@contextlib.contextmanager
def _mounted(dev: str, where: Path) -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    run(["mount", dev, str(where)])
    try:
        yield where
    finally:
        run(["umount", str(where)])


def write_disk(rootfs: Path, disk: Path, log: Path) -> None:
    with open(disk, "wb") as f:
        f.truncate(DISK_MIB << 20)
    layout = ("label: gpt\n"
              f"start=2048, size=2048, type={BIOS_BOOT}, name=bios\n"
              f"size={ESP_MIB}MiB, type={ESP}, name=esp\n"
              f"type={LINUX}, name=root\n")
    layout_file = disk.with_suffix(".sfdisk")
    layout_file.write_text(layout)
    run(["sh", "-c", f"sfdisk --quiet {disk} < {layout_file}"], log=log)
    with _loop(disk) as dev:
        run(["mkfs.fat", "-F", "32", "-i", ESP_VOLID, "-n", "ESP", f"{dev}p2"], log=log)
        run(["mkfs.ext4", "-q", "-F", "-U", ROOT_UUID, "-L", "root", "-d", str(rootfs),
             f"{dev}p3"], log=log)
        with _mounted(f"{dev}p3", disk.parent / "mnt") as mnt:
            run(["grub-install", "--target=i386-pc",
                 f"--directory={rootfs}/usr/lib/grub/i386-pc", f"--boot-directory={mnt}/boot",
                 "--modules=part_gpt ext2", "--no-nvram", dev], log=log)
        efi = disk.parent / "grubx64.efi"
        early = disk.parent / "early.cfg"
        early.write_text(early_cfg())
        run(["grub-mkimage", "-O", "x86_64-efi", "-d", f"{rootfs}/usr/lib/grub/x86_64-efi",
             "-o", str(efi), "-p", "/boot/grub", "-c", str(early), *EFI_MODULES], log=log)
        env = {"MTOOLS_SKIP_CHECK": "1"}
        esp = f"{dev}p2"
        for directory in ("::/EFI", "::/EFI/BOOT", "::/EFI/debian"):
            run(["mmd", "-i", esp, directory], log=log, env=env)
        for dest in ("::/EFI/BOOT/BOOTX64.EFI", "::/EFI/debian/grubx64.efi"):
            run(["mcopy", "-o", "-i", esp, str(efi), dest], log=log, env=env)
        run(["sync"])


def build_plain_disk(work: Path) -> tuple[Blob, Path, str, dict[str, Any]]:
    rootfs = work / "rootfs"
    log = work / "build.log"
    created = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    t0 = time.monotonic()
    with step("plain disk: mmdebstrap (about 2 minutes)"):
        run(mmdebstrap_argv(rootfs), log=log)
    meta = finish_tree(rootfs)
    with step("plain disk: partitions, filesystems, GRUB (BIOS + UEFI)"):
        raw = work / "disk.raw"
        write_disk(rootfs, raw, log)
        qcow2 = work / "disk.qcow2"
        run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(qcow2)], log=log)
        raw.unlink()
    sha = hashlib.sha256()
    with open(qcow2, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            sha.update(chunk)
    digest = f"sha256:{sha.hexdigest()}"
    meta["build_seconds"] = round(time.monotonic() - t0, 1)
    meta.update(root_uuid=ROOT_UUID, esp_uuid=ESP_UUID, disk_mib=DISK_MIB)
    say(f"plain disk: kernel {meta['kver']}, {len(meta['packages'])} packages, "
        f"{meta['build_seconds']} s")
    return Blob(digest=digest, diff_id=digest, size=qcow2.stat().st_size), qcow2, created, meta


def plain_disk(cache: Cache | None = None) -> tuple[Path, LayerRecord]:
    """The cached plain disk (qcow2, read-only: take an overlay), built when missing."""
    if os.geteuid() != 0:
        raise FixtureError("building the plain disk needs root (mmdebstrap, loop devices)")
    cache = cache or Cache()
    rec, _ = cache.get_or_build(KIND, plain_disk_key(), build_plain_disk)
    return cache.blob_path(rec.blob), rec


def main() -> int:
    try:
        path, rec = plain_disk()
    except FixtureError as exc:
        print(f"build-plain-disk: error: {exc}", flush=True)
        return 1
    print(path)
    print(f"kernel {rec.meta.get('kver')}, built {rec.created}", flush=True)
    return 0


