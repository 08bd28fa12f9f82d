"""The bootable-image contract (DESIGN.md), checked on a rootfs directory or an image summary.

`bootc-py container lint` prints one line per problem; the installer runs the same checks
before it touches a disk, refusing on errors and warning loudly on the rest.
"""

from __future__ import annotations

import gzip
import io
import lzma
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import IO, Protocol, cast

import zstandard

PREPARE_ROOT = b"ostree-prepare-root"
GRUB_BIOS = "usr/lib/grub/i386-pc/moddep.lst"
GRUB_EFI = "usr/lib/grub/x86_64-efi/moddep.lst"
SYSTEMD_BOOT = "usr/lib/systemd/boot/efi/systemd-bootx64.efi"
BOOTABLE_LABELS = ("containers.bootc", "ostree.bootable")


class Severity(Enum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class Problem:
    severity: Severity
    message: str

    def __str__(self) -> str:
        return f"{self.severity.value}: {self.message}"


class ImageView(Protocol):
    def exists(self, path: str) -> bool: ...
    def glob(self, pattern: str) -> list[str]: ...


@dataclass(frozen=True)
class DirView:
    """A rootfs directory (flattened image or deployment), never following its symlinks out."""

    root: Path

    def exists(self, path: str) -> bool:
        return os.path.lexists(self.root / path.strip("/"))

    def glob(self, pattern: str) -> list[str]:
        found = []
        for match in self.root.glob(pattern):
            found.append(str(match.relative_to(self.root)))
        return sorted(found)


def _drain(stream: IO[bytes]) -> Iterator[bytes]:
    while chunk := stream.read(1 << 20):
        yield chunk


def _decompressed_chunks(data: IO[bytes]) -> Iterator[bytes]:
    head = data.read(6)
    data.seek(0)
    if head.startswith(b"\x1f\x8b"):
        with gzip.GzipFile(fileobj=data) as gz:
            yield from _drain(cast(IO[bytes], gz))
    elif head.startswith(b"\x28\xb5\x2f\xfd"):
        with zstandard.ZstdDecompressor().stream_reader(data) as zst:
            yield from _drain(zst)
    elif head.startswith(b"\xfd7zXZ"):
        with lzma.LZMAFile(data) as xz:
            yield from _drain(cast(IO[bytes], xz))
    else:
        yield from _drain(data)


def _contains(chunks: Iterator[bytes], needle: bytes) -> bool:
    tail = b""
    for chunk in chunks:
        window = tail + chunk
        if needle in window:
            return True
        tail = window[-len(needle):]
    return False


def initramfs_contains(handle: IO[bytes], needle: bytes = PREPARE_ROOT) -> bool:
    """Whether an initramfs (maybe an uncompressed early cpio followed by a compressed main
    one, as dracut writes) contains `needle` in its file names or content. `handle` must be
    seekable."""
    raw = handle.read(6)
    if raw.startswith((b"070701", b"070702")):
        # Early (microcode) cpio: scan it, then decompress what follows it.
        whole = raw + handle.read()
        if needle in whole:
            return True
        for magic in (b"\x1f\x8b\x08", b"\x28\xb5\x2f\xfd", b"\xfd7zXZ"):
            offset = whole.find(magic)
            if offset > 0:
                return _contains(_decompressed_chunks(io.BytesIO(whole[offset:])), needle)
        return False
    handle.seek(0)
    return _contains(_decompressed_chunks(handle), needle)


def check(view: ImageView, *, labels: Mapping[str, str] | None = None,
          initramfs_ok: Mapping[str, bool] | None = None,
          root: Path | None = None) -> list[Problem]:
    """All contract problems of an image. `initramfs_ok` maps initramfs paths to whether they
    carry ostree-prepare-root (from a scan); with `root` the initramfs is read from disk."""
    problems: list[Problem] = []

    def error(msg: str) -> None:
        problems.append(Problem(Severity.ERROR, msg))

    def warn(msg: str) -> None:
        problems.append(Problem(Severity.WARNING, msg))

    kernels = view.glob("usr/lib/modules/*/vmlinuz")
    if not kernels:
        error("no kernel at /usr/lib/modules/$KVER/vmlinuz (move the kernel there from /boot)")
    elif len(kernels) > 1:
        error(f"{len(kernels)} kernels under /usr/lib/modules "
              f"({', '.join(k.split('/')[3] for k in kernels)}); exactly one is supported")
    for kernel in kernels:
        initramfs = kernel.rsplit("/", 1)[0] + "/initramfs.img"
        if not view.exists(initramfs):
            error(f"no initramfs at /{initramfs} (build it with dracut and the 'ostree' module)")
            continue
        has_prepare: bool | None = None
        if initramfs_ok is not None and initramfs in initramfs_ok:
            has_prepare = initramfs_ok[initramfs]
        elif root is not None:
            with (root / initramfs).open("rb") as handle:
                has_prepare = initramfs_contains(handle)
        if has_prepare is False:
            error(f"/{initramfs} lacks ostree-prepare-root (rebuild it with dracut --add ostree)")
    if not view.exists("usr/bin/ostree"):
        error("ostree is not installed (/usr/bin/ostree)")
    if not view.exists("usr/lib/ostree/ostree-prepare-root"):
        error("ostree-prepare-root is missing (install the package providing "
              "/usr/lib/ostree/ostree-prepare-root, 'ostree-boot' on Debian)")
    if not (view.exists(GRUB_BIOS) or view.exists(GRUB_EFI) or view.exists(SYSTEMD_BOOT)):
        error("no bootloader payload: neither GRUB modules (/usr/lib/grub/i386-pc, x86_64-efi) "
              "nor systemd-boot (/" + SYSTEMD_BOOT + ")")
    if labels is not None and not any(labels.get(k) in ("1", "true") for k in BOOTABLE_LABELS):
        error("the image is not labelled bootable (LABEL containers.bootc=1)")
    if not (view.exists("usr/bin/bootc-py") and view.exists("usr/bin/python3")):
        warn("bootc-py is not in the image (/usr/bin/bootc-py with a python3): the installed "
             "host will not be able to update itself")
    return problems


def errors(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.severity is Severity.ERROR]
