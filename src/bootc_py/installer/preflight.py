"""Read what an install needs to know about an image before anything is written.

One streaming pass over the layer tars (headers, plus the few small files worth capturing)
gives the unpacked size, the kernels, the install configuration and what the lint checks look
at, so a bad image is refused before the target disk is touched. The summary is kept in the
blob cache by the layers' digests: the next install or build from that cache, and the live
installer of a medium built with it, skip the pass (the sample image's: 2.6 s on a host, about
22 s under TCG, most of it decompressing the OS layer).
"""

from __future__ import annotations

import base64
import fnmatch
import functools
import hashlib
import io
import logging
import os
import posixpath
from collections.abc import Generator, Mapping
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bootc_py import __version__, lint
from bootc_py.artifacts import build_config
from bootc_py.artifacts.build_config import EMBEDDED as BIB_CONFIG
from bootc_py.image import digest as dg
from bootc_py.image import tarstream
from bootc_py.image.cache import BlobCache
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

log = logging.getLogger(__name__)

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


@functools.cache
def _scan_id() -> str:
    """What a kept summary depends on besides the layers: this scan's code (this module, the
    tar reader, the initramfs check, the config.toml paths) and version. Any change to them
    makes a new key, so a summary is only used by a bootc-py that would make the same one."""
    h = hashlib.sha256(__version__.encode())
    for module in (__file__, tarstream.__file__, lint.__file__, build_config.__file__):
        try:
            h.update(Path(module).read_bytes())
        except OSError:  # no source to read (a frozen build): never reuse a summary
            h.update(os.urandom(16))
    return h.hexdigest()


def summarize(image: Image) -> ImageSummary:
    """The image's summary. A second call for the same layers reuses the first pass; so does
    a later process with the same blob cache (or a live installer whose build put the summary
    into its cache: `keep_summary`), since a summary is a function of the verified layers."""
    layers = _layers(image)
    if layers not in _SUMMARIES:
        cache, key = BlobCache(image.cache_dir), summary_key(layers)
        kept = _from_doc(cache.summary(key), layers)
        if kept is not None:
            log.info("image summary of %s: kept from an earlier scan", dg.short(
                image.manifest_digest))
        else:
            kept = _summarize(image)
            cache.put_summary(key, _to_doc(kept, layers))
        _SUMMARIES[layers] = kept
    return _SUMMARIES[layers]


def _layers(image: Image) -> tuple[str, ...]:
    return tuple(layer.digest for layer in image.layers)


def summary_key(layers: tuple[str, ...]) -> str:
    return hashlib.sha256("\n".join((_scan_id(), *layers)).encode()).hexdigest()


def keep_summary(image: Image, cache_root: Path) -> None:
    """Put the image's summary into the blob cache at `cache_root` (another system's: the
    live root of an installer medium), so an install from that cache does not scan again."""
    layers = _layers(image)
    BlobCache(cache_root).put_summary(summary_key(layers), _to_doc(summarize(image), layers))


def _to_doc(summary: ImageSummary, layers: tuple[str, ...]) -> dict[str, Any]:
    return {"layers": list(layers), "unpacked_bytes": summary.unpacked_bytes,
            "entries": dict(summary.entries),
            "files": {k: base64.b64encode(v).decode() for k, v in summary.files.items()},
            "symlinks": dict(summary.symlinks), "initramfs_ok": dict(summary.initramfs_ok)}


def _from_doc(doc: dict[str, Any] | None, layers: tuple[str, ...]) -> ImageSummary | None:
    """A kept summary, if it is one for these layers and whole; else None (scan again)."""
    if doc is None or doc.get("layers") != list(layers):
        return None
    try:
        size = doc["unpacked_bytes"]
        entries, files = _str_map(doc["entries"]), _str_map(doc["files"])
        symlinks, initramfs_ok = _str_map(doc["symlinks"]), doc["initramfs_ok"]
        if (type(size) is not int or size < 0 or entries is None or files is None
                or symlinks is None or not isinstance(initramfs_ok, dict)
                or not all(type(v) is bool for v in initramfs_ok.values())
                or not set(entries.values()) <= {"file", "dir", "symlink", "other"}):
            return None
        return ImageSummary(
            unpacked_bytes=size, entries=entries,
            files={k: base64.b64decode(v, validate=True) for k, v in files.items()},
            symlinks=symlinks, initramfs_ok={str(k): v for k, v in initramfs_ok.items()})
    except (KeyError, ValueError):  # binascii.Error is a ValueError
        return None


def _str_map(value: object) -> dict[str, str] | None:
    if isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str)
                                       for k, v in value.items()):
        return value
    return None


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
