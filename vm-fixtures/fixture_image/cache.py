"""The layer cache: blobs by digest and one record per (layer kind, key).

Default location /var/cache/bootc-py-fixtures; BOOTC_PY_FIXTURE_CACHE overrides it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fixture_image.errors import FixtureError
from fixture_image.oci import Blob, locked

DEFAULT_CACHE = Path("/var/cache/bootc-py-fixtures")


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below `path` (from /proc/self/mountinfo), deepest first."""
    prefix = str(path.resolve())
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mnt = line.split()[4].encode().decode("unicode_escape")
            if mnt == prefix or mnt.startswith(prefix + "/"):
                found.append(mnt)
    return sorted(found, key=len, reverse=True)


def cache_dir() -> Path:
    return Path(os.environ.get("BOOTC_PY_FIXTURE_CACHE", DEFAULT_CACHE))


@dataclass(frozen=True)
class LayerRecord:
    kind: str
    key: str
    blob: Blob
    created: str                      # RFC 3339, when the layer was built
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> LayerRecord:
        d = json.loads(text)
        return cls(kind=d["kind"], key=d["key"], blob=Blob(**d["blob"]), created=d["created"],
                   meta=d.get("meta", {}))


class Cache:
    def __init__(self, root: Path | None = None) -> None:
        self.root = root or cache_dir()
        self.blobs = self.root / "blobs" / "sha256"

    def blob_path(self, blob: Blob) -> Path:
        return self.blobs / blob.hex

    def _record_path(self, kind: str, key: str) -> Path:
        return self.root / "layers" / f"{kind}-{key}.json"

    def lookup(self, kind: str, key: str) -> LayerRecord | None:
        path = self._record_path(kind, key)
        if not path.exists():
            return None
        rec = LayerRecord.from_json(path.read_text())
        blob = self.blob_path(rec.blob)
        if not blob.exists() or blob.stat().st_size != rec.blob.size:
            return None
        return rec

    @contextlib.contextmanager
    def workdir(self, kind: str) -> Iterator[Path]:
        """A scratch directory, removed afterwards unless something is still mounted in it."""
        work = self.root / "work"
        work.mkdir(parents=True, exist_ok=True)
        path = Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=work))
        try:
            yield path
        finally:
            busy = mounts_under(path)
            if busy:
                raise FixtureError(f"not removing {path}: still mounted: {', '.join(busy)}")
            shutil.rmtree(path, ignore_errors=True)

    def _remove_stale_workdirs(self, kind: str) -> None:
        """Scratch dirs of this kind left by a killed build (we hold the kind's lock now)."""
        for old in sorted((self.root / "work").glob(f"{kind}-*")):
            if old.is_dir() and not mounts_under(old):
                shutil.rmtree(old, ignore_errors=True)

    def get_or_build(self, kind: str, key: str,
                     build: Callable[[Path], tuple[Blob, Path, str, dict[str, Any]]]
                     ) -> tuple[LayerRecord, bool]:
        """The cached layer for (kind, key), building it under a lock when missing.

        `build(workdir)` returns (blob, the file holding it, created, meta). Returns the record
        and whether it was built now.
        """
        rec = self.lookup(kind, key)
        if rec:
            return rec, False
        with locked(self.root / "locks" / f"{kind}.lock"):
            rec = self.lookup(kind, key)       # another process may have built it meanwhile
            if rec:
                return rec, False
            self._remove_stale_workdirs(kind)
            with self.workdir(kind) as work:
                blob, path, created, meta = build(work)
                self.blobs.mkdir(parents=True, exist_ok=True)
                dst = self.blob_path(blob)
                if not dst.exists():
                    path.chmod(0o444)           # blobs are hard-linked into layouts: keep intact
                    shutil.move(path, dst)
                rec = LayerRecord(kind=kind, key=key, blob=blob, created=created, meta=meta)
                record = self._record_path(kind, key)
                record.parent.mkdir(parents=True, exist_ok=True)
                tmp = record.with_suffix(".tmp")
                tmp.write_text(rec.to_json())
                tmp.replace(record)
            return rec, True
