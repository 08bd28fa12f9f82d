"""The tar reader against Python's tarfile, for every format and extension layers use."""

from __future__ import annotations

import gzip
import io
import os
import tarfile

import pytest
import zstandard

from bootc_py.errors import ImageError, UnsupportedError
from bootc_py.image.tarstream import TarReader, decompressed_chunks, parse_pax


def _archive(fmt: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        def add(name: str, kind: bytes, data: bytes = b"", **kw: object) -> None:
            ti = tarfile.TarInfo(name)
            ti.type = kind
            ti.size = len(data) if kind == tarfile.REGTYPE else 0
            for k, v in kw.items():
                setattr(ti, k, v)
            tf.addfile(ti, io.BytesIO(data) if data else None)

        add("dir/", tarfile.DIRTYPE, mode=0o755, mtime=1_700_000_000)
        add("dir/file", tarfile.REGTYPE, b"hello\n" * 1000, mode=0o4755, uid=1000, gid=1000)
        add("p" * 120 + "/" + "n" * 90, tarfile.REGTYPE, b"long name", mode=0o644)
        add("dir/empty", tarfile.REGTYPE, b"", mode=0o600)
        add("link", tarfile.SYMTYPE, linkname="t" * 120 if fmt != tarfile.USTAR_FORMAT else "t")
        add("hard", tarfile.LNKTYPE, linkname="dir/file")
        add("dev", tarfile.CHRTYPE, devmajor=1, devminor=3, mode=0o666)
        add("blk", tarfile.BLKTYPE, devmajor=259, devminor=70000 if fmt != tarfile.USTAR_FORMAT
            else 7)
        add("fifo", tarfile.FIFOTYPE, mode=0o644)
        add("big-ids", tarfile.REGTYPE, b"x", uid=3_000_000 if fmt != tarfile.USTAR_FORMAT
            else 7, gid=5)
    return buf.getvalue()


def _ours(data: bytes, chunk: int = 777) -> list[tuple[object, ...]]:
    chunks = (data[i:i + chunk] for i in range(0, len(data), chunk))
    reader = TarReader(chunks)
    out = []
    for e in reader:
        content = reader.read_data() if e.type == "0" else b""
        out.append((e.name.rstrip("/"), e.type, e.mode, e.uid, e.gid, e.size, e.linkname,
                    e.devmajor, e.devminor, e.mtime_ns // 10**9, content))
    return out


def _theirs(data: bytes) -> list[tuple[object, ...]]:
    out = []
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        for m in tf:
            content = tf.extractfile(m).read() if m.isreg() else b""  # type: ignore[union-attr]
            kind = m.type.decode() if m.type != tarfile.AREGTYPE else "0"
            out.append((m.name, kind, m.mode, m.uid, m.gid, m.size if m.isreg() else 0,
                        m.linkname, m.devmajor, m.devminor, int(m.mtime), content))
    return out


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
@pytest.mark.parametrize("chunk", [1, 511, 4096, 1 << 20])
def test_matches_tarfile(fmt: int, chunk: int) -> None:
    data = _archive(fmt)
    assert _ours(data, chunk) == _theirs(data)


def test_pax_xattrs_binary_and_subsecond_mtime() -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        ti = tarfile.TarInfo("f")
        ti.mtime = 1_700_000_000.25
        ti.pax_headers = {"SCHILY.xattr.security.capability":
                          b"\x01\x00\x00\x02\xff\xfe".decode("utf-8", "surrogateescape"),
                          "SCHILY.xattr.user.a": "b",
                          "LIBARCHIVE.xattr.user.%41": "dmFsdWU",  # "value", unpadded
                          "atime": "1600000000.5"}
        tf.addfile(ti)
    (e,) = list(TarReader(iter([buf.getvalue()])))
    assert e.xattrs == {"security.capability": b"\x01\x00\x00\x02\xff\xfe", "user.a": b"b",
                        "user.A": b"value"}
    assert e.mtime_ns == 1_700_000_000_250_000_000
    assert e.atime_ns == 1_600_000_000_500_000_000


def test_parse_pax_records() -> None:
    assert parse_pax(b"13 path=abcd\n20 SCHILY.xattr.a=\x00\n") == {"path": b"abcd",
                                                                   "SCHILY.xattr.a": b"\x00"}
    with pytest.raises(ImageError, match="malformed pax"):
        parse_pax(b"99 path=x\n")


def test_bad_checksum_and_truncation() -> None:
    data = bytearray(_archive(tarfile.PAX_FORMAT))
    data[0] ^= 0x01
    with pytest.raises(ImageError, match="bad header checksum"):
        _ours(bytes(data))
    good = _archive(tarfile.USTAR_FORMAT)
    with pytest.raises(ImageError, match="truncated"):
        _ours(good[:700])  # inside the data of the second entry


def test_sparse_files_are_refused() -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        ti = tarfile.TarInfo("sparse")
        ti.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0"}
        tf.addfile(ti)
    with pytest.raises(UnsupportedError, match="sparse"):
        list(TarReader(iter([buf.getvalue()])))


@pytest.mark.parametrize("compression", ["gzip", "gzip-multi", "zstd", "zstd-multi", ""])
def test_decompression(compression: str) -> None:
    payload = os.urandom(300_000) + b"\0" * 3_000_000
    if compression == "gzip":
        blob = gzip.compress(payload)
    elif compression == "gzip-multi":  # pigz-style concatenated members
        blob = gzip.compress(payload[:100_000]) + gzip.compress(payload[100_000:])
    elif compression == "zstd":
        blob = zstandard.ZstdCompressor().compress(payload)
    elif compression == "zstd-multi":
        c = zstandard.ZstdCompressor()
        blob = c.compress(payload[:100_000]) + c.compress(payload[100_000:])
    else:
        blob = payload
    seen = []
    chunks = list(decompressed_chunks(io.BytesIO(blob), compression.split("-")[0], seen.append))
    assert b"".join(chunks) == payload
    assert max(len(c) for c in chunks) <= 1 << 20  # bounded output, whatever the ratio
    assert sum(seen) == len(blob)


def test_corrupt_and_truncated_gzip() -> None:
    blob = gzip.compress(os.urandom(100_000))
    with pytest.raises(ImageError, match="truncated"):
        b"".join(decompressed_chunks(io.BytesIO(blob[:-5000]), "gzip"))
    bad = bytearray(blob)
    bad[5000] ^= 0xFF
    with pytest.raises(ImageError, match="corrupt"):
        b"".join(decompressed_chunks(io.BytesIO(bytes(bad)), "gzip"))
