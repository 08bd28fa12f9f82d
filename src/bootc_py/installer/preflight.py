"""Read what an install needs to know about an image before anything is written.

One streaming pass over the layer tars (headers, plus the few small files worth capturing)
gives the unpacked size, the kernels, the install configuration and what the lint checks look
at, so a bad image is refused before the target disk is touched.
"""

from __future__ import annotations

import fnmatch
import io
import posixpath
from collections.abc import Generator, Mapping
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from bootc_py.artifacts.build_config import EMBEDDED as BIB_CONFIG
from bootc_py.image.source import Image
from bootc_py.image.tarstream import (
    DIR,
    HARDLINK,
    REG,
    SYMLINK,
    Prefetch,
    TarEntry,
    TarReader,
    decompressed_chunks,
    sniff,
)
from bootc_py.lint import initramfs_contains

# Small files worth capturing for planning: install configuration, kargs.d, os-release.
CAPTURE = (
    "usr/lib/bootc/install/*.toml",
    "usr/lib/bootc/kargs.d/*.toml",
    "usr/lib/bootc-py/install/*.toml",
    "usr/lib/os-release",
    "etc/os-release",
    # bootc-image-builder's config.toml the image carries: captured in the same pass, so
    # `build` reads the image's layers once, not twice.
    *BIB_CONFIG,
)
CAPTURE_MAX = 1 << 20
INITRAMFS = "usr/lib/modules/*/initramfs.img"
INITRAMFS_MAX = 512 << 20


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


def _entries(blob: Path) -> Generator[tuple[TarEntry, TarReader], None, None]:
    """Tar entries of a layer blob (any compression), decompressed a few chunks ahead."""
    with blob.open("rb") as handle:
        chunks = Prefetch(decompressed_chunks(handle, sniff(blob)))
        try:
            reader = TarReader(iter(chunks))
            for entry in reader:
                yield entry, reader
        finally:
            chunks.close()


def _norm(name: str) -> str | None:
    path = posixpath.normpath("/" + name).lstrip("/")
    return path or None


class _Tree:
    """The final tree's paths, with whiteouts applied; children indexed by parent so removing
    a subtree costs its size, not the tree's."""

    def __init__(self) -> None:
        self.entries: dict[str, str] = {}
        self.sizes: dict[str, int] = {}
        self.children: dict[str, set[str]] = {}
        self.files: dict[str, bytes] = {}
        self.symlinks: dict[str, str] = {}
        self.initramfs_ok: dict[str, bool] = {}

    def add(self, path: str, kind: str, size: int = 0) -> None:
        parent = posixpath.dirname(path)
        if parent and self.entries.get(parent) != "dir":
            self.add(parent, "dir")  # implicit parents exist, as extraction creates them
        old = self.entries.get(path)
        if old is not None and not (old == "dir" and kind == "dir"):
            self.remove(path)
        self.entries[path] = kind
        self.sizes[path] = size
        self.children.setdefault(posixpath.dirname(path), set()).add(path)

    def remove(self, path: str) -> None:
        if path not in self.entries:
            return
        for child in list(self.children.pop(path, ())):
            self.remove(child)
        for table in (self.entries, self.sizes, self.files, self.symlinks, self.initramfs_ok):
            table.pop(path, None)
        self.children.get(posixpath.dirname(path), set()).discard(path)

    def clear_dir(self, path: str) -> None:
        for child in list(self.children.get(path, ())):
            self.remove(child)


# Summaries this process made, by the image's layers (content-addressed and verified blobs).
_SUMMARIES: dict[tuple[str, ...], ImageSummary] = {}


def summarize(image: Image) -> ImageSummary:
    """The image's summary; a second call for the same layers reuses the first pass."""
    key = tuple(layer.digest for layer in image.layers)
    if key not in _SUMMARIES:
        _SUMMARIES[key] = _summarize(image)
    return _SUMMARIES[key]


def _summarize(image: Image) -> ImageSummary:
    tree = _Tree()
    for layer in image.layers:
        with closing(_entries(image.blob_path(layer.digest))) as members:
            for entry, reader in members:
                path = _norm(entry.name)
                if path is None:
                    continue
                base = posixpath.basename(path)
                parent = posixpath.dirname(path)
                if base == ".wh..wh..opq":
                    tree.clear_dir(parent)
                    continue
                if base.startswith(".wh."):
                    tree.remove(posixpath.join(parent, base[4:]))
                    continue
                if entry.type == DIR:
                    tree.add(path, "dir")
                elif entry.type == HARDLINK:
                    target = _norm(entry.linkname)
                    tree.add(path, "file")
                    if target in tree.files:
                        tree.files[path] = tree.files[target]
                    if target in tree.initramfs_ok:
                        tree.initramfs_ok[path] = tree.initramfs_ok[target]
                elif entry.type == SYMLINK:
                    tree.add(path, "symlink")
                    tree.symlinks[path] = entry.linkname
                elif entry.type in (REG, "7", "\0"):
                    tree.add(path, "file", entry.size)
                    if fnmatch.fnmatchcase(path, INITRAMFS):
                        data = reader.read_data(limit=INITRAMFS_MAX)
                        tree.initramfs_ok[path] = initramfs_contains(io.BytesIO(data))
                    elif entry.size <= CAPTURE_MAX and any(
                            fnmatch.fnmatchcase(path, pat) for pat in CAPTURE):
                        tree.files[path] = reader.read_data(limit=CAPTURE_MAX)
                else:
                    tree.add(path, "other")
    return ImageSummary(unpacked_bytes=sum(tree.sizes.values()) + 4096 * len(tree.entries),
                        entries=tree.entries, files=tree.files, symlinks=tree.symlinks,
                        initramfs_ok=tree.initramfs_ok)
