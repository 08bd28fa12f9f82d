"""Streaming reads of layer blobs: decompression with bounded output, and a tar parser.

The parser reads ustar, POSIX pax (path, linkpath, size, uid, gid, mtime, atime, devices and
SCHILY/LIBARCHIVE xattrs with binary values) and GNU long names. It never seeks and never holds
more than one decompressed chunk (~1 MiB) plus one entry's header data, so memory does not grow
with the layer. A blob is decompressed in a helper thread (zlib and zstd release the GIL), so
on two cores inflating and writing files overlap.
"""

from __future__ import annotations

import base64
import binascii
import os
import queue
import threading
import types
import urllib.parse
import zlib
from collections.abc import Callable, Iterator
from typing import IO, Any

import zstandard

from bootc_py.errors import ImageError, UnsupportedError

_inflate: types.ModuleType = zlib
try:  # ISA-L inflates 2-3x faster than zlib, same API; optional (Debian 12 lacks it)
    from isal import isal_zlib

    _inflate = isal_zlib
except ImportError:  # pragma: no cover - exercised where isal is not installed
    pass
_INFLATE_ERRORS: tuple[type[BaseException], ...] = (zlib.error, _inflate.error)

IN_CHUNK = 1 << 20
OUT_CHUNK = 1 << 20
BLOCK = 512
# Header-only entry types: their size field does not announce data (Go's archive/tar agrees).
_NO_DATA = frozenset("123456")
_PAX_LIMIT = 16 << 20  # pax/GNU name headers are metadata; refuse absurd ones

REG, HARDLINK, SYMLINK, CHR, BLK, DIR, FIFO = "0", "1", "2", "3", "4", "5", "6"

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def sniff(path: str | os.PathLike[str]) -> str:
    """The compression of a blob from its magic bytes: "gzip", "zstd" or "" (plain)."""
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    return ""


def _gzip_chunks(f: IO[bytes], counted: Callable[[int], None]) -> Iterator[bytes]:
    d = _inflate.decompressobj(31)
    buf = b""
    while True:
        if not buf:
            buf = f.read(IN_CHUNK)
            counted(len(buf))
            if not buf:
                if not d.eof:
                    raise ImageError("the compressed layer is truncated (gzip stream ends early)")
                return
        try:
            out = d.decompress(buf, OUT_CHUNK)  # bounded: a "zip bomb" cannot balloon memory
        except _INFLATE_ERRORS as exc:
            raise ImageError(f"the compressed layer is corrupt (gzip: {exc})") from exc
        buf = d.unconsumed_tail
        if out:
            yield out
        if d.eof:
            rest = d.unused_data
            if not rest:
                rest = f.read(IN_CHUNK)
                counted(len(rest))
            if not rest.startswith(GZIP_MAGIC):
                return  # end of the last member (anything after it is padding)
            d = _inflate.decompressobj(31)  # another member follows (pigz, concatenation)
            buf = rest


def _zstd_chunks(f: IO[bytes], counted: Callable[[int], None]) -> Iterator[bytes]:
    dctx = zstandard.ZstdDecompressor()
    reader = dctx.stream_reader(f, read_size=IN_CHUNK, read_across_frames=True)
    pos = f.tell()
    try:
        while True:
            out = reader.read(OUT_CHUNK)
            now = f.tell()
            counted(now - pos)
            pos = now
            if not out:
                return
            yield out
    except zstandard.ZstdError as exc:
        raise ImageError(f"the compressed layer is corrupt (zstd: {exc})") from exc


def _plain_chunks(f: IO[bytes], counted: Callable[[int], None]) -> Iterator[bytes]:
    while chunk := f.read(OUT_CHUNK):
        counted(len(chunk))
        yield chunk


def decompressed_chunks(f: IO[bytes], compression: str,
                        counted: Callable[[int], None] = lambda n: None) -> Iterator[bytes]:
    """The blob's uncompressed bytes in chunks of at most ~1 MiB."""
    if compression == "gzip":
        return _gzip_chunks(f, counted)
    if compression == "zstd":
        return _zstd_chunks(f, counted)
    return _plain_chunks(f, counted)


class Prefetch:
    """Runs a chunk iterator in a helper thread, a few chunks ahead (bounded queue)."""

    _END = object()

    def __init__(self, chunks: Iterator[bytes], depth: int = 4) -> None:
        self._q: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(chunks,), daemon=True,
                                        name="layer-read")
        self._thread.start()

    def _run(self, chunks: Iterator[bytes]) -> None:
        try:
            for chunk in chunks:
                while not self._stop.is_set():
                    try:
                        self._q.put(chunk, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
            self._put(self._END)
        except BaseException as exc:  # handed to the consumer, raised there
            self._put(exc)

    def _put(self, item: object) -> None:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def __iter__(self) -> Iterator[bytes]:
        while True:
            item = self._q.get()
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


class TarEntry:
    """One tar member, with pax and GNU extensions already applied."""

    __slots__ = ("atime_ns", "devmajor", "devminor", "gid", "linkname", "mode", "mtime_ns",
                 "name", "size", "type", "uid", "xattrs")

    def __init__(self) -> None:
        self.name = ""
        self.type = REG
        self.mode = 0
        self.uid = 0
        self.gid = 0
        self.size = 0
        self.mtime_ns = 0
        self.atime_ns: int | None = None
        self.linkname = ""
        self.devmajor = 0
        self.devminor = 0
        self.xattrs: dict[str, bytes] = {}

    def __repr__(self) -> str:
        return f"TarEntry({self.name!r}, type={self.type!r}, size={self.size})"


def _num(field: bytes, what: str) -> int:
    if field and field[0] & 0x80:  # GNU base-256 for values that do not fit in octal
        n = int.from_bytes(field[1:], "big")
        if field[0] == 0xFF:
            n -= 1 << (8 * (len(field) - 1))
        return n
    s = field.split(b"\0", 1)[0].strip(b" ")
    try:
        return int(s, 8) if s else 0
    except ValueError:
        raise ImageError(f"the layer is not a valid tar ({what} field {s[:12]!r})") from None


def _str(field: bytes) -> str:
    return os.fsdecode(field.split(b"\0", 1)[0])


def _pax_time_ns(value: bytes) -> int:
    text = value.decode("ascii", "replace")
    neg = text.startswith("-")
    whole, _, frac = text.lstrip("-").partition(".")
    try:
        ns = int(whole or "0") * 1_000_000_000 + int((frac + "000000000")[:9] or "0")
    except ValueError:
        raise ImageError(f"the layer has an invalid pax time {text!r}") from None
    return -ns if neg else ns


def parse_pax(data: bytes) -> dict[str, bytes]:
    """Parse pax records ("%d %s=%s\\n"); values stay bytes (xattr values are binary)."""
    out: dict[str, bytes] = {}
    pos = 0
    while pos < len(data):
        if data[pos] == 0:
            break
        sp = data.find(b" ", pos)
        try:
            length = int(data[pos:sp])
        except ValueError:
            raise ImageError("the layer has a malformed pax header") from None
        rec = data[sp + 1:pos + length]
        if (length <= 0 or sp < 0 or pos + length > len(data) or not rec.endswith(b"\n")
                or b"=" not in rec):
            raise ImageError("the layer has a malformed pax header")
        key, _, value = rec[:-1].partition(b"=")
        out[key.decode("utf-8", "surrogateescape")] = value
        pos += length
    return out


class TarReader:
    """Iterate over the entries of a tar stream given as chunks.

    For each entry, read its data with `copy_to()` / `read_data()` or not at all (the reader
    skips what is left before the next entry).
    """

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = iter(chunks)
        self._buf = b""
        self._pos = 0
        self._left = 0  # data bytes of the current entry not yet consumed
        self._pad = 0  # padding after them
        self.offset = 0  # uncompressed bytes consumed so far

    def _fill(self) -> bool:
        for chunk in self._chunks:
            if chunk:
                self._buf = chunk
                self._pos = 0
                return True
        return False

    def _read(self, n: int) -> bytes:
        avail = len(self._buf) - self._pos
        if avail >= n:
            out = self._buf[self._pos:self._pos + n]
            self._pos += n
            self.offset += n
            return out
        parts = [self._buf[self._pos:]]
        got = avail
        while got < n:
            if not self._fill():
                self._buf, self._pos = b"", 0
                self.offset += got
                return b"".join(parts)
            take = min(n - got, len(self._buf))
            parts.append(self._buf[:take])
            self._pos = take
            got += take
        self.offset += n
        return b"".join(parts)

    def _skip(self, n: int) -> None:
        while n > 0:
            avail = len(self._buf) - self._pos
            if avail == 0:
                if not self._fill():
                    raise ImageError("the layer's tar stream is truncated")
                continue
            take = min(n, avail)
            self._pos += take
            self.offset += take
            n -= take

    def copy_to(self, fd: int, n: int | None = None) -> int:
        """Write the current entry's data (or its next n bytes) to a file descriptor."""
        n = self._left if n is None else min(n, self._left)
        done = 0
        while done < n:
            avail = len(self._buf) - self._pos
            if avail == 0:
                if not self._fill():
                    raise ImageError("the layer's tar stream is truncated")
                continue
            take = min(n - done, avail)
            view = memoryview(self._buf)[self._pos:self._pos + take]
            while view:
                w = os.write(fd, view)
                view = view[w:]
            self._pos += take
            self.offset += take
            done += take
        self._left -= n
        return n

    def read_data(self, limit: int = _PAX_LIMIT) -> bytes:
        if self._left > limit:
            raise ImageError(f"the layer has an oversized metadata entry ({self._left} bytes)")
        data = self._read(self._left)
        if len(data) != self._left:
            raise ImageError("the layer's tar stream is truncated")
        self._left = 0
        return data

    def drain(self) -> None:
        """Consume the rest of the stream (so a hash over all of it completes)."""
        self._buf, self._pos = b"", 0
        for chunk in self._chunks:
            self.offset += len(chunk)

    def __iter__(self) -> Iterator[TarEntry]:
        pax_global: dict[str, bytes] = {}
        pax: dict[str, bytes] = {}
        long_name: bytes | None = None
        long_link: bytes | None = None
        while True:
            if self._left or self._pad:
                self._skip(self._left + self._pad)
                self._left = self._pad = 0
            block = self._read(BLOCK)
            if len(block) < BLOCK:
                if not block and not pax and long_name is None:
                    return  # EOF without end marker: accepted, like GNU tar and Go
                raise ImageError("the layer's tar stream is truncated")
            if block.count(0) == BLOCK:
                return  # end-of-archive marker (what follows is padding)
            stored = _num(block[148:156], "checksum")
            total = sum(block[:148]) + sum(block[156:]) + 8 * 32
            if stored != total and stored != total - 256 * sum(  # old writers summed signed
                    1 for b in block[:148] + block[156:] if b >= 128):
                raise ImageError(f"the layer is not a valid tar (bad header checksum at byte "
                                 f"{self.offset - BLOCK})")
            typeflag = chr(block[156]) if block[156] else REG
            size = _num(block[124:136], "size")
            if size < 0:
                raise ImageError("the layer is not a valid tar (negative size)")
            if typeflag in "xgLK":
                self._left, self._pad = size, -size % BLOCK
                data = self.read_data()
                if typeflag == "x":
                    pax.update(parse_pax(data))
                elif typeflag == "g":
                    pax_global.update(parse_pax(data))
                elif typeflag == "L":
                    long_name = data.split(b"\0", 1)[0]
                else:
                    long_link = data.split(b"\0", 1)[0]
                continue
            e = TarEntry()
            e.type = "0" if typeflag == "7" else typeflag  # contiguous file = regular file
            magic = block[257:263]
            name = block[0:100].split(b"\0", 1)[0]
            if magic == b"ustar\0" and block[345]:
                name = block[345:500].split(b"\0", 1)[0] + b"/" + name
            e.mode = _num(block[100:108], "mode") & 0o7777
            e.uid = _num(block[108:116], "uid")
            e.gid = _num(block[116:124], "gid")
            e.mtime_ns = _num(block[136:148], "mtime") * 1_000_000_000
            link = block[157:257].split(b"\0", 1)[0]
            if magic.startswith(b"ustar"):
                e.devmajor = _num(block[329:337], "devmajor")
                e.devminor = _num(block[337:345], "devminor")
            if long_name is not None:
                name, long_name = long_name, None
            if long_link is not None:
                link, long_link = long_link, None
            e.name = os.fsdecode(name)
            e.linkname = os.fsdecode(link)
            e.size = size
            if pax or pax_global:
                try:
                    _apply_pax({**pax_global, **pax} if pax_global else pax, e)
                except ValueError:
                    raise ImageError("the layer has a malformed pax header") from None
                pax = {}
            if e.type == "S":
                raise UnsupportedError("the layer contains a sparse file (GNU sparse tar), "
                                       "which bootc-py does not support")
            data_size = 0 if e.type in _NO_DATA else e.size
            self._left, self._pad = data_size, -data_size % BLOCK
            if e.type in _NO_DATA:
                e.size = 0
            yield e


def _apply_pax(records: dict[str, bytes], e: TarEntry) -> None:
    for key, value in records.items():
        if not value and key in ("path", "linkpath", "size", "uid", "gid", "mtime", "atime"):
            continue  # an empty value unsets a (global) record
        if key == "path":
            e.name = os.fsdecode(value)
        elif key == "linkpath":
            e.linkname = os.fsdecode(value)
        elif key == "size":
            e.size = int(value)
        elif key == "uid":
            e.uid = int(value)
        elif key == "gid":
            e.gid = int(value)
        elif key == "mtime":
            e.mtime_ns = _pax_time_ns(value)
        elif key == "atime":
            e.atime_ns = _pax_time_ns(value)
        elif key.startswith("SCHILY.xattr."):
            e.xattrs[key[len("SCHILY.xattr."):]] = value
        elif key.startswith("LIBARCHIVE.xattr."):
            xname = urllib.parse.unquote(key[len("LIBARCHIVE.xattr."):])
            try:
                e.xattrs.setdefault(xname, base64.b64decode(value + b"=="))
            except binascii.Error:
                raise ImageError(f"the layer has a malformed xattr {xname!r}") from None
        elif key == "SCHILY.devmajor":
            e.devmajor = int(value)
        elif key == "SCHILY.devminor":
            e.devminor = int(value)
        elif key.startswith("GNU.sparse."):
            raise UnsupportedError("the layer contains a sparse file (GNU sparse tar), "
                                   "which bootc-py does not support")
