"""Read what an install needs to know about an image before anything is written.

One streaming pass over the layer tars (headers, plus the few small files worth capturing)
gives the unpacked size, the kernels, the install configuration and what the lint checks look
at, so a bad image is refused before the target disk is touched.
"""

from __future__ import annotations

import fnmatch
import gzip
import io
import posixpath
import tarfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, cast

import zstandard

from bootc_py.errors import UnsupportedError
from bootc_py.image.source import Image
from bootc_py.lint import initramfs_contains

# Small files worth capturing for planning: install configuration, kargs.d, os-release.
CAPTURE = (
    "usr/lib/bootc/install/*.toml",
    "usr/lib/bootc/kargs.d/*.toml",
    "usr/lib/os-release",
    "etc/os-release",
)
CAPTURE_MAX = 1 << 20
INITRAMFS = "usr/lib/modules/*/initramfs.img"


@dataclass(frozen=True)
class ImageSummary:
    """The image's final tree (whiteouts applied), as far as planning needs it."""

    unpacked_bytes: int
    entries: Mapping[str, str]  # path -> "file" | "dir" | "symlink" | "other"
    files: Mapping[str, bytes] = field(default_factory=dict)
    symlinks: Mapping[str, str] = field(default_factory=dict)
    # initramfs path -> whether it carries ostree-prepare-root
    initramfs_ok: Mapping[str, bool] = field(default_factory=dict)

    def exists(self, path: str) -> bool:
        return path.strip("/") in self.entries

    def glob(self, pattern: str) -> list[str]:
        return sorted(p for p in self.entries if fnmatch.fnmatchcase(p, pattern))


def open_layer(blob: Path, media_type: str) -> IO[bytes]:
    if media_type.endswith(("+gzip", ".gzip")):
        return cast(IO[bytes], gzip.open(blob, "rb"))  # streams; memory stays flat
    if media_type.endswith(("+zstd", ".zstd")):
        reader: IO[bytes] = zstandard.ZstdDecompressor().stream_reader(blob.open("rb"),
                                                                       closefd=True)
        return reader
    if media_type.endswith("tar"):
        return blob.open("rb")
    raise UnsupportedError(f"unsupported layer media type: {media_type}")


def _norm(name: str) -> str | None:
    path = posixpath.normpath("/" + name).lstrip("/")
    return path or None


def _iter_members(blob: Path, media_type: str) -> Iterator[tuple[tarfile.TarInfo, tarfile.TarFile]]:
    stream = open_layer(blob, media_type)
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                yield member, tar
    finally:
        stream.close()


def summarize(image: Image, capture: tuple[str, ...] = CAPTURE) -> ImageSummary:
    entries: dict[str, str] = {}
    sizes: dict[str, int] = {}
    files: dict[str, bytes] = {}
    symlinks: dict[str, str] = {}
    initramfs_ok: dict[str, bool] = {}

    def remove_tree(path: str) -> None:
        prefix = path + "/"
        for key in [k for k in entries if k == path or k.startswith(prefix)]:
            entries.pop(key, None)
            sizes.pop(key, None)
            files.pop(key, None)
            symlinks.pop(key, None)
            initramfs_ok.pop(key, None)

    for layer in image.layers:
        for member, tar in _iter_members(image.blob_path(layer.digest), layer.media_type):
            path = _norm(member.name)
            if path is None:
                continue
            base = posixpath.basename(path)
            parent = posixpath.dirname(path)
            if base == ".wh..wh..opq":
                remove_tree(parent)
                entries[parent] = "dir"
                continue
            if base.startswith(".wh."):
                remove_tree(posixpath.join(parent, base[4:]))
                continue
            if member.isdir():
                if entries.get(path) not in (None, "dir"):
                    remove_tree(path)
                entries[path] = "dir"
                continue
            remove_tree(path)
            if member.isreg() or member.islnk():
                entries[path] = "file"
                sizes[path] = member.size
                if member.islnk():
                    target = _norm(member.linkname)
                    sizes[path] = 0
                    if target in files:
                        files[path] = files[target]
                    if target in initramfs_ok:
                        initramfs_ok[path] = initramfs_ok[target]
                elif fnmatch.fnmatchcase(path, INITRAMFS):
                    handle = tar.extractfile(member)
                    if handle is not None:
                        initramfs_ok[path] = initramfs_contains(io.BytesIO(handle.read()))
                elif member.size <= CAPTURE_MAX and any(
                        fnmatch.fnmatchcase(path, pat) for pat in capture):
                    handle = tar.extractfile(member)
                    if handle is not None:
                        files[path] = handle.read()
            elif member.issym():
                entries[path] = "symlink"
                symlinks[path] = member.linkname
            else:
                entries[path] = "other"
    return ImageSummary(unpacked_bytes=sum(sizes.values()) + 4096 * len(entries),
                        entries=entries, files=files, symlinks=symlinks,
                        initramfs_ok=initramfs_ok)
