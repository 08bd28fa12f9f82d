"""The image as an OCI layout (an installer medium's payload), from the verified blob cache.

The manifest, config and layer blobs are written as the cache holds them (hard links where
the cache is on the same filesystem), so the layout's manifest digest is the pulled one and an
install from the medium records the same digest an install from the registry would.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

from bootc_py.errors import ArtifactError
from bootc_py.image import digest as dg
from bootc_py.image import mediatypes as mt
from bootc_py.image.cache import BlobCache
from bootc_py.image.source import Image


def _place(src: Path, dest: Path) -> None:
    try:
        os.link(src, dest)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
            raise
        shutil.copyfile(src, dest)


def _manifest_blob(image: Image, cache: BlobCache) -> tuple[str, Path]:
    """(digest, cached file) of the manifest as pulled. containers-storage images record the
    stored image's digest, not that of the copy in the cache: take the copy's from its record."""
    path = cache.blob_path(image.manifest_digest)
    if path.is_file():
        return image.manifest_digest, path
    record = cache.lookup(str(image.ref))
    if record is not None and cache.blob_path(record.manifest_digest).is_file():
        return record.manifest_digest, cache.blob_path(record.manifest_digest)
    raise ArtifactError(f"the manifest of {image.ref} is not in the cache {cache.root}",
                        "pull the image again")


def write_payload(image: Image, dest: Path, tag: str) -> str:
    """Write `image` as an OCI layout at `dest` (new), tagged `tag`; returns its manifest
    digest."""
    cache = BlobCache(image.cache_dir)
    digest, manifest = _manifest_blob(image, cache)
    blobs = dest / "blobs"
    for algo in {dg.split(d)[0] for d in (digest, image.config_digest,
                                          *(x.digest for x in image.layers))}:
        (blobs / algo).mkdir(parents=True, exist_ok=True)
    for d in (digest, image.config_digest, *(x.digest for x in image.layers)):
        algo, hexpart = dg.split(d)
        target = blobs / algo / hexpart
        if not target.exists():
            _place(cache.blob_path(d) if d != digest else manifest, target)
    media_type = str(image.manifest.get("mediaType") or mt.OCI_MANIFEST)
    index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [{
        "mediaType": media_type, "digest": digest, "size": manifest.stat().st_size,
        "annotations": {"org.opencontainers.image.ref.name": tag}}]}
    (dest / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}) + "\n")
    (dest / "index.json").write_text(json.dumps(index, indent=2) + "\n")
    return digest
