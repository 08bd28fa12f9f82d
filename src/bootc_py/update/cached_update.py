"""The result of the last `upgrade --check`, kept on the sysroot for `status` (cachedUpdate).

One JSON file, <sysroot>/ostree/bootc-py/cached-update.json, naming the image reference it
was checked for: a later switch to another image makes it irrelevant, and status ignores it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from bootc_py.store.sysroot import Sysroot

FILE = "cached-update.json"


@dataclass(frozen=True)
class CachedUpdate:
    imgref: str
    manifest_digest: str
    version: str | None
    timestamp: str | None  # the image's creation time
    architecture: str | None
    checked: str  # when the check ran (UTC, RFC 3339)

    def to_bootc(self) -> dict[str, object]:
        """bootc's ImageStatus for cachedUpdate."""
        from bootc_py.store.sysroot import image_reference

        return {"image": image_reference(self.imgref), "version": self.version,
                "timestamp": self.timestamp, "imageDigest": self.manifest_digest,
                "architecture": self.architecture}


def path(sysroot: Sysroot) -> Path:
    return sysroot.state_dir / FILE


def read(sysroot: Sysroot) -> CachedUpdate | None:
    p = path(sysroot)
    try:
        data = json.loads(p.read_text())
        return CachedUpdate(**{k: data.get(k) for k in CachedUpdate.__dataclass_fields__})
    except (OSError, ValueError, TypeError):
        return None


def write(sysroot: Sysroot, update: CachedUpdate | None) -> None:
    """Record (atomically), or with None forget, the last check's result."""
    p = path(sysroot)
    if update is None:
        p.unlink(missing_ok=True)
        return
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(FILE + ".tmp")
    tmp.write_text(json.dumps(asdict(update), indent=2) + "\n")
    os.replace(tmp, p)
