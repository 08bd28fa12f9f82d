"""Reading OCI image layouts: a directory (oci:) or a tar of one (oci-archive:).

Only reads; every blob is addressed by a validated digest, so a layout cannot make us read a
file outside it. Blob content is verified by the caller (the cache verifies while copying).
"""

from __future__ import annotations

import contextlib
import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from bootc_py.errors import ImageError, NotFoundError
from bootc_py.image import digest as dg

REF_NAME = "org.opencontainers.image.ref.name"
SMALL_LIMIT = 4 << 20


def load_json_object(data: bytes, what: str) -> dict[str, Any]:
    """A JSON document that must be an object (index, manifest, config), or ImageError."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ImageError(f"malformed {what}: not valid JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise ImageError(f"malformed {what}: not a JSON object")
    return doc


class Layout:
    """Common logic; subclasses provide _read() and _open()."""

    label: str

    def _read(self, name: str, limit: int) -> bytes:
        raise NotImplementedError

    def _open(self, name: str) -> contextlib.AbstractContextManager[IO[bytes]]:
        raise NotImplementedError

    def _check(self) -> None:
        try:
            doc = load_json_object(self._read("oci-layout", 4096), f"{self.label}/oci-layout")
        except FileNotFoundError:
            raise ImageError(f"{self.label} is not an OCI image layout (no oci-layout file)"
                             ) from None
        version = doc.get("imageLayoutVersion")
        if not isinstance(version, str) or not version.startswith("1."):
            raise ImageError(f"{self.label}: unsupported OCI layout version {version!r}")

    def index(self) -> dict[str, Any]:
        try:
            return load_json_object(self._read("index.json", SMALL_LIMIT),
                                    f"{self.label}/index.json")
        except FileNotFoundError:
            raise ImageError(f"{self.label} is not an OCI image layout (no index.json)") from None

    @staticmethod
    def _blob_name(digest: str) -> str:
        if not dg.is_digest(digest):
            raise ImageError(f"invalid digest {digest!r}")
        algo, hexpart = dg.split(digest)
        return f"blobs/{algo}/{hexpart}"

    def read_blob(self, digest: str, limit: int = SMALL_LIMIT) -> bytes:
        try:
            data = self._read(self._blob_name(digest), limit)
        except FileNotFoundError:
            raise NotFoundError(f"blob {dg.short(digest)} is missing from {self.label}") from None
        return data

    @contextlib.contextmanager
    def open_blob(self, digest: str) -> Iterator[IO[bytes]]:
        try:
            with self._open(self._blob_name(digest)) as f:
                yield f
        except FileNotFoundError:
            raise NotFoundError(f"blob {dg.short(digest)} is missing from {self.label}") from None

    def select(self, tag: str | None) -> dict[str, Any]:
        """The index.json descriptor for `tag` (or the only one when no tag is given)."""
        manifests = self.index().get("manifests")
        if not isinstance(manifests, list):
            raise ImageError(f"{self.label}/index.json has no 'manifests' list")
        descs = [m for m in manifests if isinstance(m, dict)]
        names = [str((m.get("annotations") or {}).get(REF_NAME, "")) for m in descs]
        if tag is not None:
            matches = [d for d, n in zip(descs, names, strict=True) if n == tag]
            if not matches:
                have = ", ".join(sorted(n for n in names if n)) or "none"
                raise NotFoundError(f"no image tagged '{tag}' in {self.label} (tags: {have})")
            return matches[0]
        if len(descs) != 1:
            have = ", ".join(sorted(n for n in names if n)) or "untagged"
            raise ImageError(f"{self.label} holds {len(descs)} images; name one with "
                             f"{self.label}:TAG (tags: {have})")
        return descs[0]


class OciDir(Layout):
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.label = str(path)
        if self.path.exists() and not self.path.is_dir():
            raise ImageError(f"{path} is a file, not an OCI layout directory",
                             f"for an OCI archive (a tar) use oci-archive:{path}")
        if not self.path.is_dir():
            raise NotFoundError(f"OCI layout directory {path} does not exist")
        self._check()

    def _read(self, name: str, limit: int) -> bytes:
        with open(self.path / name, "rb") as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise ImageError(f"{self.label}/{name} is larger than {limit} bytes")
        return data

    def _open(self, name: str) -> contextlib.AbstractContextManager[IO[bytes]]:
        return open(self.path / name, "rb")

    def blob_file(self, digest: str) -> Path:
        return self.path / self._blob_name(digest)


class OciArchive(Layout):
    """A tar of an OCI layout, read in place (members are indexed once, then seeked to)."""

    def __init__(self, path: Path) -> None:
        self.label = str(path)
        self._path = Path(path)
        if Path(path).is_dir():
            raise ImageError(f"{path} is a directory, not an OCI archive",
                             f"for an OCI layout directory use oci:{path}")
        if not Path(path).is_file():
            raise NotFoundError(f"OCI archive {path} does not exist")
        try:
            self._tar = tarfile.open(path, "r:")  # noqa: SIM115 (closed by close())
            self._members = {m.name.removeprefix("./"): m for m in self._tar.getmembers()
                             if m.isfile()}
        except (tarfile.TarError, OSError) as exc:
            raise ImageError(f"{path} is not a readable tar archive: {exc}") from exc
        self._check()

    def close(self) -> None:
        self._tar.close()

    def _member(self, name: str) -> tarfile.TarInfo:
        m = self._members.get(name)
        if m is None:
            raise FileNotFoundError(name)
        return m

    def _read(self, name: str, limit: int) -> bytes:
        m = self._member(name)
        if m.size > limit:
            raise ImageError(f"{self.label}:{name} is larger than {limit} bytes")
        f = self._tar.extractfile(m)
        assert f is not None  # a regular member always has content
        return f.read()

    def _open(self, name: str) -> contextlib.AbstractContextManager[IO[bytes]]:
        # A file of its own per blob: layers are fetched by parallel threads, and the tar's
        # shared file object would interleave their seeks and reads (corrupt data).
        m = self._member(name)
        raw = _MemberReader(open(self._path, "rb"), m.offset_data, m.size)  # noqa: SIM115
        return contextlib.closing(io.BufferedReader(raw))


class _MemberReader(io.RawIOBase):
    """`size` bytes of `f` from `offset`: one tar member, read through its own file."""

    def __init__(self, f: io.BufferedReader, offset: int, size: int) -> None:
        self._f = f
        self._left = size
        f.seek(offset)

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        view = memoryview(buf)[:self._left]
        n: int = self._f.readinto(view)
        self._left -= n
        return n

    def close(self) -> None:
        self._f.close()
        super().close()
