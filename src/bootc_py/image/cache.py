"""A content-addressed blob cache that two processes can use at once.

Layout under the cache root:

    blobs/sha256/<hex>     verified blobs (manifests, configs, layers), read-only once there
    tmp/<algo>-<hex>.partial  a download in progress, kept after a network failure to resume
    locks/<algo>-<hex>.lock   per-blob flock: one writer per blob across processes
    images/<key>.json      which image (reference -> manifest digest) was pulled, for list/prune
    summaries/<key>.json   what was derived from an image's layers (installer/preflight.py), by
                           the layer digests: worth keeping, cheap to lose (prune drops them)
    cache.lock             shared by pulls and by every process using a pulled image (until it
                           exits), exclusive for prune

A blob only appears under blobs/ by an atomic rename after its digest was verified, so a reader
never sees partial content; pulls re-hash cached blobs so a corrupted one is noticed (and removed,
to be fetched again).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from bootc_py.errors import DigestMismatchError, ImageError
from bootc_py.image import digest as dg
from bootc_py.nospace import no_space

log = logging.getLogger(__name__)

DEFAULT_CACHE_DIR = Path("/var/lib/bootc-py/cache")
ENV_CACHE_DIR = "BOOTC_PY_CACHE_DIR"
SUMMARIES = "summaries"
_CHUNK = 1 << 20


# Cache-wide shared locks this process holds until it exits (see BlobCache.hold).
_HELD: dict[Path, IO[str]] = {}


def default_cache_dir() -> Path:
    """$BOOTC_PY_CACHE_DIR, or /var/lib/bootc-py/cache."""
    env = os.environ.get(ENV_CACHE_DIR)
    return Path(env) if env else DEFAULT_CACHE_DIR


def _stem(digest: str) -> str:
    """`<algo>-<hex>`: a digest as a file name (tmp/ and locks/)."""
    return "-".join(dg.split(digest))


def hash_file(path: Path, algo: str = "sha256") -> tuple[str, int]:
    """(digest, size) of a file, read in 1 MiB chunks."""
    h = hashlib.new(algo)
    size = 0
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
            size += n
    return f"{algo}:{h.hexdigest()}", size


@dataclass(frozen=True)
class ImageRecord:
    """What `image list` shows: an image the cache holds."""

    ref: str
    manifest_digest: str
    config_digest: str
    blobs: tuple[str, ...]  # every digest the image needs (index, manifest, config, layers)
    size: int  # bytes of its layers
    pulled: float  # unix time

    def to_json(self) -> dict[str, Any]:
        return {"ref": self.ref, "manifest_digest": self.manifest_digest,
                "config_digest": self.config_digest, "blobs": list(self.blobs),
                "size": self.size, "pulled": self.pulled}


@dataclass(frozen=True)
class PruneResult:
    blobs_removed: int
    bytes_freed: int
    images_removed: int


class BlobWriter:
    """Streams one blob into its .partial file, hashing as it goes; commit() verifies.

    Resumes: an existing .partial (from an interrupted earlier attempt) is hashed first and
    `offset` says how much of the blob is already there.
    """

    def __init__(self, cache: BlobCache, digest: str, size: int | None, what: str) -> None:
        self.cache = cache
        self.digest = digest
        self.size = size
        self.what = what
        self.partial = cache.partial_path(digest)
        self._hash = dg.hasher(digest)
        self.offset = 0
        if self.partial.exists():
            if size is not None and self.partial.stat().st_size > size:
                self.partial.unlink()
            else:
                with open(self.partial, "rb", buffering=0) as f:
                    while chunk := f.read(_CHUNK):
                        self._hash.update(chunk)
                        self.offset += len(chunk)
        self.resumed = self.offset > 0
        self._file = open(self.partial, "ab", buffering=0)  # noqa: SIM115 (closed in commit/close)

    def write(self, data: bytes | memoryview) -> None:
        if self.size is not None and self.offset + len(data) > self.size:
            self.discard()
            raise DigestMismatchError(
                f"{self.what} {dg.short(self.digest)} is larger than the {self.size} bytes its "
                "descriptor says; the download was deleted")
        self._hash.update(data)
        view = memoryview(data)
        try:
            while view:
                n = self._file.write(view)
                view = view[n or 0:]
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
            # Not kept for resuming: a .partial that cannot grow would fill the disk for good.
            self.discard()
            raise no_space(self.cache.root, self.size,
                           f"the {self.what} {dg.short(self.digest)}") from exc
        self.offset += len(data)

    def restart(self) -> None:
        """Throw away what was written (the server ignored a Range request)."""
        self._file.truncate(0)
        self._file.seek(0)
        self._hash = dg.hasher(self.digest)
        self.offset = 0
        self.resumed = False

    def discard(self) -> None:
        self._file.close()
        with contextlib.suppress(FileNotFoundError):
            self.partial.unlink()

    def close(self) -> None:
        """Stop writing but keep the partial file (so a later attempt resumes from it)."""
        self._file.close()

    def commit(self) -> Path:
        """Verify size and digest, then move the blob into place atomically."""
        self._file.close()
        got = f"{dg.split(self.digest)[0]}:{self._hash.hexdigest()}"
        if got != self.digest or (self.size is not None and self.offset != self.size):
            with contextlib.suppress(FileNotFoundError):
                self.partial.unlink()
            detail = (f"got {dg.short(got)}" if got != self.digest
                      else f"got {self.offset} bytes, expected {self.size}")
            raise DigestMismatchError(
                f"{self.what} {dg.short(self.digest)} does not match its digest ({detail}); "
                "the download was deleted")
        final = self.cache.blob_path(self.digest)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(self.partial, 0o644)
        os.replace(self.partial, final)
        return final


class BlobCache:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _ensure(self) -> None:
        try:
            for sub in ("blobs", "tmp", "locks", "images"):
                (self.root / sub).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ImageError(f"cannot create the image cache in {self.root}: {exc.strerror}",
                             hint="pass --cache-dir or set BOOTC_PY_CACHE_DIR") from exc

    def blob_path(self, digest: str) -> Path:
        algo, hexpart = dg.split(digest)
        return self.root / "blobs" / algo / hexpart

    def partial_path(self, digest: str) -> Path:
        return self.root / "tmp" / f"{_stem(digest)}.partial"

    def _lock_path(self, digest: str) -> Path:
        return self.root / "locks" / f"{_stem(digest)}.lock"

    def drop_partial(self, digest: str) -> None:
        """Delete a blob's unfinished download, unless another process is writing it now."""
        try:
            lf = open(self._lock_path(digest))  # noqa: SIM115 (closed below; never created)
        except FileNotFoundError:
            return  # no lock file: this cache never started that blob
        with lf:
            try:
                fcntl.flock(lf, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return
            with contextlib.suppress(FileNotFoundError):
                self.partial_path(digest).unlink()

    def has(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def verify(self, digest: str, size: int | None = None) -> bool:
        """Re-hash a cached blob; a corrupt one is deleted (so it is fetched again)."""
        path = self.blob_path(digest)
        try:
            got, got_size = hash_file(path, dg.split(digest)[0])
        except FileNotFoundError:
            return False
        if got == digest and (size is None or got_size == size):
            return True
        log.warning("cached blob %s is corrupt (got %s, %d bytes); fetching it again",
                    dg.short(digest), dg.short(got), got_size)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return False

    def read(self, digest: str, limit: int = 4 << 20) -> bytes:
        """A small cached blob (manifest, config), re-verified."""
        path = self.blob_path(digest)
        data = path.read_bytes()[: limit + 1]
        if len(data) > limit or dg.of_bytes(data, dg.split(digest)[0]) != digest:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            raise DigestMismatchError(f"cached blob {dg.short(digest)} is corrupt; pull again")
        return data

    def put_bytes(self, digest: str, data: bytes) -> Path:
        """Store a small blob whose content is already in memory (verified)."""
        if dg.of_bytes(data, dg.split(digest)[0]) != digest:
            raise DigestMismatchError(f"blob {dg.short(digest)} does not match its digest")
        path = self.blob_path(digest)
        if path.is_file():
            return path
        self._ensure()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.root / "tmp" / f"{path.name}.{os.getpid()}.small"
        tmp.write_bytes(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        return path

    @contextlib.contextmanager
    def lock(self, exclusive: bool = False) -> Iterator[None]:
        """The cache-wide lock: shared while pulling, exclusive while pruning."""
        self._ensure()
        with open(self.root / "cache.lock", "a") as f:
            op = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
            try:
                fcntl.flock(f, op | fcntl.LOCK_NB)
            except BlockingIOError:
                log.info("waiting for another bootc-py process using the cache %s", self.root)
                fcntl.flock(f, op)
            yield

    def hold(self) -> None:
        """Keep a shared lock on the cache until this process exits: an Image read from the
        cache is used (unpacked, imported) long after the pull, and `image prune` must wait
        rather than delete its blobs underneath it."""
        key = self.root.resolve()
        if key in _HELD:
            return
        self._ensure()
        f = open(self.root / "cache.lock", "a")  # noqa: SIM115 (held for the process' life)
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for a prune of the cache %s", self.root)
            fcntl.flock(f, fcntl.LOCK_SH)
        _HELD[key] = f

    def _release_hold(self) -> None:
        f = _HELD.pop(self.root.resolve(), None)
        if f is not None:
            f.close()

    @contextlib.contextmanager
    def writer(self, digest: str, size: int | None, what: str = "blob"
               ) -> Iterator[BlobWriter | None]:
        """A BlobWriter holding the blob's lock, or None when the blob is (now) in the cache.

        Another process may be fetching the same blob: we wait for its lock, then find the blob
        there. Call with the cache lock held (shared).
        """
        self._ensure()
        with open(self._lock_path(digest), "a") as lf:
            try:
                fcntl.flock(lf, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.info("waiting for another process fetching %s", dg.short(digest))
                fcntl.flock(lf, fcntl.LOCK_EX)
            if self.has(digest):
                yield None
                return
            w = BlobWriter(self, digest, size, what)
            try:
                yield w
            finally:
                if not w._file.closed:
                    w.close()

    # Image records, for `image list` and `image prune`.

    def _record_path(self, ref: str) -> Path:
        return self.root / "images" / (hashlib.sha256(ref.encode()).hexdigest()[:32] + ".json")

    def record(self, rec: ImageRecord) -> None:
        self._ensure()
        path = self._record_path(rec.ref)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(rec.to_json(), indent=1) + "\n")
        os.replace(tmp, path)

    def summary_path(self, key: str) -> Path:
        return self.root / SUMMARIES / f"{key}.json"

    def put_summary(self, key: str, doc: dict[str, Any]) -> None:
        """Keep `doc` under `key`; a cache that cannot be written only loses the shortcut."""
        path = self.summary_path(key)
        tmp = path.with_name(f".{key}.{os.getpid()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o644)
            with open(fd, "w") as f:
                json.dump(doc, f, separators=(",", ":"))
            os.replace(tmp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            log.info("not keeping the image summary in %s: %s", path.parent,
                     exc.strerror or exc)

    def summary(self, key: str) -> dict[str, Any] | None:
        """The document kept under `key`, or None (none, or unreadable: made again)."""
        path = self.summary_path(key)
        try:
            doc = json.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError, RecursionError) as exc:
            log.warning("ignoring unreadable image summary %s: %s", path, exc)
            return None
        return doc if isinstance(doc, dict) else None

    def lookup(self, ref: str) -> ImageRecord | None:
        path = self._record_path(ref)
        return _load_record(path) if path.is_file() else None

    def images(self) -> list[ImageRecord]:
        d = self.root / "images"
        if not d.is_dir():
            return []
        recs = [r for p in sorted(d.glob("*.json")) if (r := _load_record(p)) is not None]
        return sorted(recs, key=lambda r: r.ref)

    def prune(self, everything: bool = False) -> PruneResult:
        """Remove blobs no recorded image needs (all of them with `everything`)."""
        if not self.root.is_dir():
            return PruneResult(0, 0, 0)
        self._release_hold()  # our own readers are done if we prune
        with self.lock(exclusive=True):
            images = self.images()
            removed_images = 0
            if everything:
                for rec in images:
                    self._record_path(rec.ref).unlink(missing_ok=True)
                    removed_images += 1
                images = []
            keep = {d for rec in images for d in rec.blobs}
            count = freed = 0
            blobs = self.root / "blobs"
            for algo_dir in blobs.iterdir() if blobs.is_dir() else []:
                for blob in algo_dir.iterdir():
                    if f"{algo_dir.name}:{blob.name}" in keep:
                        continue
                    freed += blob.lstat().st_size
                    blob.unlink()
                    count += 1
            self._prune_summaries(keep)
            for sub in ("tmp", "locks"):
                for f in (self.root / sub).iterdir():
                    freed += f.lstat().st_size
                    if f.is_dir():
                        shutil.rmtree(f)
                    else:
                        f.unlink()
            return PruneResult(count, freed, removed_images)

    def _prune_summaries(self, keep: set[str]) -> None:
        """Summaries of layers the cache no longer holds go (made again if needed)."""
        d = self.root / SUMMARIES
        for f in d.iterdir() if d.is_dir() else []:
            doc = self.summary(f.stem) if f.suffix == ".json" else None
            layers = doc.get("layers") if doc is not None else None
            if not (isinstance(layers, list) and layers and all(x in keep for x in layers)):
                f.unlink(missing_ok=True)


def _load_record(path: Path) -> ImageRecord | None:
    try:
        d = json.loads(path.read_text())
        return ImageRecord(str(d["ref"]), str(d["manifest_digest"]), str(d["config_digest"]),
                           tuple(str(x) for x in d["blobs"]), int(d["size"]),
                           float(d.get("pulled", 0)))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring unreadable cache record %s: %s", path, exc)
        return None

