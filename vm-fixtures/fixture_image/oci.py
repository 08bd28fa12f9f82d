"""Deterministic layer tarballs and an OCI image layout, written without a container engine.

A layer is a tar stream of a directory tree: entries sorted by path, numeric owners, no user
or group names, no xattrs (the OS tree has none that matter: only journald's ACL on
/var/log/journal, which tmpfiles recreates), hard links kept, gzip without a name or a time.
The same tree gives the same bytes, so the same digest.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import json
import os
import shutil
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"
GZIP_LEVEL = 6


@dataclass(frozen=True)
class Blob:
    """A layer blob: digest of the gzip bytes, diff_id of the tar stream, size in bytes."""

    digest: str
    diff_id: str
    size: int

    @property
    def hex(self) -> str:
        return self.digest.split(":", 1)[1]


class _Tee:
    """A write-only file: hashes what goes through it (the tar) and passes it on (to gzip)."""

    def __init__(self, inner: BinaryIO) -> None:
        self.inner = inner
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.inner.write(data)

    def flush(self) -> None:
        self.inner.flush()


def _walk(root: Path) -> Iterator[tuple[str, os.stat_result, Path]]:
    """Every entry under `root` (not root itself), sorted by path bytes, parents first."""
    stack = [""]
    while stack:
        rel = stack.pop()
        base = root / rel if rel else root
        names = sorted(os.listdir(base), key=os.fsencode)
        subdirs = []
        for name in names:
            path = base / name
            st = path.lstat()
            relname = f"{rel}/{name}" if rel else name
            yield relname, st, path
            if stat.S_ISDIR(st.st_mode):
                subdirs.append(relname)
        # Depth first, in sorted order: push in reverse so the smallest pops first.
        stack.extend(reversed(subdirs))


def _add(tar: tarfile.TarFile, rel: str, st: os.stat_result, path: Path,
         links: dict[tuple[int, int], str], mtime: int | None,
         owner: tuple[int, int] | None) -> None:
    info = tarfile.TarInfo(rel)
    info.mode = stat.S_IMODE(st.st_mode)
    info.mtime = int(st.st_mtime) if mtime is None else mtime
    info.uid, info.gid = owner if owner else (st.st_uid, st.st_gid)
    info.uname = info.gname = ""
    if stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
    elif stat.S_ISLNK(st.st_mode):
        info.type = tarfile.SYMTYPE
        info.linkname = os.readlink(path)
    elif stat.S_ISREG(st.st_mode):
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in links:
            info.type = tarfile.LNKTYPE
            info.linkname = links[key]
        else:
            if st.st_nlink > 1:
                links[key] = rel
            info.size = st.st_size
            with open(path, "rb") as f:
                tar.addfile(info, f)
            return
    elif stat.S_ISFIFO(st.st_mode):
        info.type = tarfile.FIFOTYPE
    elif stat.S_ISSOCK(st.st_mode):
        return
    else:
        raise ValueError(f"device node in a layer tree: {path}")
    tar.addfile(info)


def write_layer(tree: Path, out: Path, *, mtime: int | None = None,
                owner: tuple[int, int] | None = None) -> Blob:
    """Write `tree` as a gzip'd tar layer to `out`; return its digest, diff_id and size.

    `mtime` clamps every entry's time (layers built from staging dirs use a constant);
    `owner` forces a uid/gid. Sockets are skipped; device nodes are refused (empty /dev first).
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    links: dict[tuple[int, int], str] = {}
    with open(out, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0,
                                                compresslevel=GZIP_LEVEL) as gz:
        tee = _Tee(gz)  # type: ignore[arg-type]
        with tarfile.open(fileobj=tee, mode="w|",  # type: ignore[call-overload]
                          format=tarfile.PAX_FORMAT) as tar:
            for rel, st, path in _walk(tree):
                _add(tar, rel, st, path, links, mtime, owner)
    return Blob(digest=_sha256_file(out), diff_id=f"sha256:{tee.sha.hexdigest()}",
                size=out.stat().st_size)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return f"sha256:{h.hexdigest()}"


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


@contextlib.contextmanager
def locked(lockfile: Path) -> Iterator[None]:
    """An exclusive advisory lock held for the duration of the block."""
    lockfile.parent.mkdir(parents=True, exist_ok=True)
    with open(lockfile, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class Layout:
    """An OCI image layout directory (several tags share one blob store)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs" / "sha256"

    def init(self) -> None:
        self.blobs.mkdir(parents=True, exist_ok=True)
        marker = self.root / "oci-layout"
        if not marker.exists():
            marker.write_bytes(canonical_json({"imageLayoutVersion": "1.0.0"}))
        if not (self.root / "index.json").exists():
            self._write_index({"schemaVersion": 2, "manifests": []})

    def lock(self) -> contextlib.AbstractContextManager[None]:
        # Beside the layout, not in it: tools that read the layout see only OCI files.
        return locked(self.root.parent / f".{self.root.name}.lock")

    def put_file(self, digest: str, src: Path) -> None:
        """Add a blob from a file: hard link when possible (the cache is on the same disk)."""
        dst = self.blobs / digest.split(":", 1)[1]
        if dst.exists():
            return
        tmp = dst.with_name(dst.name + ".tmp")
        tmp.unlink(missing_ok=True)
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
            tmp.chmod(0o444)
        tmp.replace(dst)

    def put_bytes(self, data: bytes) -> str:
        digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
        dst = self.blobs / digest.split(":", 1)[1]
        if not dst.exists():
            tmp = dst.with_name(dst.name + ".tmp")
            tmp.write_bytes(data)
            tmp.replace(dst)
        return digest

    def index(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.root / "index.json").read_text())
        return data

    def _write_index(self, index: dict[str, Any]) -> None:
        tmp = self.root / "index.json.tmp"
        tmp.write_bytes(canonical_json(index))
        tmp.replace(self.root / "index.json")

    def tag(self, tag: str, manifest: bytes) -> str:
        """Store `manifest` and point `tag` at it (replacing an older manifest of that tag)."""
        digest = self.put_bytes(manifest)
        index = self.index()
        kept = [m for m in index.get("manifests", [])
                if m.get("annotations", {}).get(REF_NAME) != tag]
        kept.append({"mediaType": MEDIA_MANIFEST, "digest": digest, "size": len(manifest),
                     "annotations": {REF_NAME: tag}})
        index["manifests"] = kept
        self._write_index(index)
        return digest

    def manifest(self, tag: str) -> dict[str, Any]:
        for m in self.index().get("manifests", []):
            if m.get("annotations", {}).get(REF_NAME) == tag:
                data: dict[str, Any] = json.loads(self.read_blob(m["digest"]))
                return data
        raise KeyError(tag)

    def read_blob(self, digest: str) -> bytes:
        return (self.blobs / digest.split(":", 1)[1]).read_bytes()
