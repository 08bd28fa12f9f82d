"""Build OCI images for tests, byte by byte: crafted layers (whiteouts, hard links, devices,
xattrs, traversal attempts...) in an OCI image layout that umoci, skopeo and bootc-py all read.

    b = LayerBuilder()
    b.dir("etc").file("etc/hello", b"hi", mode=0o644).symlink("bin", "usr/bin")
    layout = OciLayout(tmp_path / "oci")
    layout.add_image("v1", [b.blob("gzip")], labels={"containers.bootc": "1"})
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zstandard

MTIME = 1_700_000_000
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_TYPES = {
    "": "application/vnd.oci.image.layer.v1.tar",
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
}


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def compress(data: bytes, compression: str) -> bytes:
    if compression == "gzip":
        return gzip.compress(data, compresslevel=1, mtime=0)
    if compression == "zstd":
        return zstandard.ZstdCompressor(level=1).compress(data)
    return data


class LayerBuilder:
    """A tar layer built entry by entry (pax format unless told otherwise)."""

    def __init__(self, fmt: int = tarfile.PAX_FORMAT) -> None:
        self._buf = io.BytesIO()
        self._tar = tarfile.open(fileobj=self._buf, mode="w", format=fmt)  # noqa: SIM115
        self._data: bytes | None = None

    def _add(self, name: str, kind: bytes, *, mode: int, uid: int = 0, gid: int = 0,
             mtime: float = MTIME, data: bytes = b"", linkname: str = "",
             xattrs: dict[str, bytes] | None = None, devmajor: int = 0,
             devminor: int = 0) -> LayerBuilder:
        ti = tarfile.TarInfo(name)
        ti.type = kind
        ti.mode = mode
        ti.uid, ti.gid = uid, gid
        ti.uname = ti.gname = ""
        ti.mtime = mtime
        ti.linkname = linkname
        ti.devmajor, ti.devminor = devmajor, devminor
        ti.size = len(data) if kind == tarfile.REGTYPE else 0
        if xattrs:
            ti.pax_headers = {f"SCHILY.xattr.{k}": v.decode("utf-8", "surrogateescape")
                              for k, v in xattrs.items()}
        self._tar.addfile(ti, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
        return self

    def dir(self, name: str, mode: int = 0o755, **kw: Any) -> LayerBuilder:
        return self._add(name, tarfile.DIRTYPE, mode=mode, **kw)

    def file(self, name: str, data: bytes = b"", mode: int = 0o644, **kw: Any) -> LayerBuilder:
        return self._add(name, tarfile.REGTYPE, mode=mode, data=data, **kw)

    def symlink(self, name: str, target: str, **kw: Any) -> LayerBuilder:
        return self._add(name, tarfile.SYMTYPE, mode=0o777, linkname=target, **kw)

    def hardlink(self, name: str, target: str, **kw: Any) -> LayerBuilder:
        return self._add(name, tarfile.LNKTYPE, mode=0o644, linkname=target, **kw)

    def chardev(self, name: str, major: int, minor: int, mode: int = 0o666,
                **kw: Any) -> LayerBuilder:
        return self._add(name, tarfile.CHRTYPE, mode=mode, devmajor=major, devminor=minor, **kw)

    def blockdev(self, name: str, major: int, minor: int, mode: int = 0o660,
                 **kw: Any) -> LayerBuilder:
        return self._add(name, tarfile.BLKTYPE, mode=mode, devmajor=major, devminor=minor, **kw)

    def fifo(self, name: str, mode: int = 0o644, **kw: Any) -> LayerBuilder:
        return self._add(name, tarfile.FIFOTYPE, mode=mode, **kw)

    def whiteout(self, path: str) -> LayerBuilder:
        d, _, base = path.rpartition("/")
        return self.file(f"{d}/.wh.{base}" if d else f".wh.{base}", mode=0o600)

    def opaque(self, directory: str) -> LayerBuilder:
        return self.file(f"{directory}/.wh..wh..opq" if directory else ".wh..wh..opq",
                         mode=0o600)

    def tar(self) -> bytes:
        if self._data is None:
            self._tar.close()
            self._data = self._buf.getvalue()
        return self._data

    def blob(self, compression: str = "gzip") -> Blob:
        raw = self.tar()
        return Blob(compress(raw, compression), LAYER_TYPES[compression], sha256(raw))


@dataclass(frozen=True)
class Blob:
    data: bytes
    media_type: str
    diff_id: str

    @property
    def digest(self) -> str:
        return sha256(self.data)


class OciLayout:
    """An OCI image layout directory being written."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        (self.path / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (self.path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
        self.index: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_INDEX,
                                      "manifests": []}
        self._save()

    def _save(self) -> None:
        (self.path / "index.json").write_text(json.dumps(self.index))

    def put(self, data: bytes) -> str:
        digest = sha256(data)
        (self.path / "blobs" / "sha256" / digest[7:]).write_bytes(data)
        return digest

    def blob_path(self, digest: str) -> Path:
        return self.path / "blobs" / "sha256" / digest.split(":", 1)[1]

    def manifest_for(self, layers: list[Blob], *, labels: dict[str, str] | None = None,
                     arch: str = "amd64", os_: str = "linux",
                     config_extra: dict[str, Any] | None = None) -> bytes:
        config = {
            "architecture": arch, "os": os_, "created": "2024-01-01T00:00:00Z",
            "config": {"Labels": labels or {}, "Env": ["PATH=/usr/bin:/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [b.diff_id for b in layers]},
            "history": [{"created_by": "oci_builder"} for _ in layers],
        }
        config.update(config_extra or {})
        config_bytes = json.dumps(config).encode()
        self.put(config_bytes)
        for b in layers:
            self.put(b.data)
        manifest = {
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": sha256(config_bytes),
                       "size": len(config_bytes)},
            "layers": [{"mediaType": b.media_type, "digest": b.digest, "size": len(b.data)}
                       for b in layers],
        }
        return json.dumps(manifest).encode()

    def tag(self, tag: str, data: bytes, media_type: str,
            platform: dict[str, str] | None = None) -> str:
        digest = self.put(data)
        self.index["manifests"] = [m for m in self.index["manifests"]
                                   if m.get("annotations", {}).get(
                                       "org.opencontainers.image.ref.name") != tag]
        desc: dict[str, Any] = {"mediaType": media_type, "digest": digest, "size": len(data),
                                "annotations": {"org.opencontainers.image.ref.name": tag}}
        if platform:
            desc["platform"] = platform
        self.index["manifests"].append(desc)
        self._save()
        return digest

    def add_image(self, tag: str, layers: list[Blob], **kw: Any) -> str:
        """Write config, layers and manifest; tag it. Returns the manifest digest."""
        return self.tag(tag, self.manifest_for(layers, **kw), OCI_MANIFEST)

    def add_index(self, tag: str, images: dict[str, list[Blob]]) -> str:
        """A multi-arch index: {"amd64": layers, "arm64": layers}. Returns the index digest."""
        entries = []
        for arch, layers in images.items():
            m = self.manifest_for(layers, arch=arch)
            entries.append({"mediaType": OCI_MANIFEST, "digest": self.put(m), "size": len(m),
                            "platform": {"os": "linux", "architecture": arch}})
        index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                            "manifests": entries}).encode()
        return self.tag(tag, index, OCI_INDEX)
