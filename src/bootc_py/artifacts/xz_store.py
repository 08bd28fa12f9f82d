"""An .xz writer for data that is mostly compressed already (a PXE bundle: a zstd squashfs,
gzip layers, a compressed kernel), so `xz` would spend its time finding nothing to gain.

The output is a plain .xz stream (CRC32 checks, LZMA2 blocks of 1 MiB) that any xz decoder
reads. Each block is compressed (LZMA2 preset 0, in a thread pool) only when a quick zlib
probe of its start finds it compressible; otherwise it is stored as LZMA2's uncompressed
chunks, at copy speed. Formats: https://tukaani.org/xz/xz-file-format.txt.
"""

from __future__ import annotations

import lzma
import struct
import zlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import BinaryIO

BLOCK = 1 << 20
PROBE = 64 << 10          # the bytes of a block the zlib probe looks at
COMPRESSIBLE = 0.9        # probe ratio under which a block is worth LZMA2
_CHUNK = 1 << 16          # LZMA2's largest uncompressed chunk
_MAGIC = b"\xfd7zXZ\x00"
_FLAGS = b"\x00\x01"      # check type CRC32
_LZMA2_ID = 0x21
_DICT_1MIB = 16           # LZMA2 dictionary-size property: 1 MiB (>= preset 0's 256 KiB)
_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 0}]


def _crc32(data: bytes) -> bytes:
    return struct.pack("<I", zlib.crc32(data))


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _pad4(n: int) -> bytes:
    return b"\0" * (-n % 4)


# The block header: its size / 4 - 1, no optional sizes, one filter (LZMA2 with its
# dictionary property), padded to a multiple of 4, then its CRC32.
_HEADER_BODY = bytes([12 // 4 - 1, 0x00, _LZMA2_ID, 1, _DICT_1MIB]) + b"\0" * 3
_BLOCK_HEADER = _HEADER_BODY + _crc32(_HEADER_BODY)


def _stored(data: bytes) -> bytes:
    """LZMA2 uncompressed chunks (the first resets the dictionary), then the end marker."""
    out = bytearray()
    for start in range(0, len(data), _CHUNK):
        piece = data[start:start + _CHUNK]
        out += bytes([0x01 if start == 0 else 0x02]) + struct.pack(">H", len(piece) - 1)
        out += piece
    out.append(0x00)
    return bytes(out)


def encode_block(data: bytes) -> bytes:
    """The LZMA2 data of one block: compressed if the probe says so and it is smaller."""
    probe = data[:PROBE]
    if len(zlib.compress(probe, 1)) < COMPRESSIBLE * len(probe):
        packed = lzma.compress(data, format=lzma.FORMAT_RAW, filters=_FILTERS)
        if len(packed) < len(data):
            return packed
    return _stored(data)


class XzWriter:
    """A binary file-like `write()` target; `close()` writes the index and the footer
    (the underlying file stays open). Blocks are encoded `jobs` at a time, in order. As a
    context manager: closed at the end of the block, abandoned (no footer) on an error."""

    def __init__(self, out: BinaryIO, jobs: int = 2) -> None:
        self._out = out
        self._buf = bytearray()
        self._records: list[tuple[int, int]] = []  # (unpadded size, uncompressed size)
        self._pool = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="xz")
        self._pending: deque[tuple[Future[bytes], int, bytes]] = deque()
        self._depth = 2 * max(1, jobs)
        out.write(_MAGIC + _FLAGS + _crc32(_FLAGS))

    def __enter__(self) -> XzWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is None:
            self.close()
        else:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._buf += data
        while len(self._buf) >= BLOCK:
            self._submit(bytes(self._buf[:BLOCK]))
            del self._buf[:BLOCK]
        return len(data)

    def _submit(self, block: bytes) -> None:
        self._pending.append((self._pool.submit(encode_block, block), len(block),
                              _crc32(block)))
        while len(self._pending) > self._depth:
            self._drain_one()

    def _drain_one(self) -> None:
        future, size, check = self._pending.popleft()
        packed = future.result()
        self._out.write(_BLOCK_HEADER + packed + _pad4(len(packed)) + check)
        self._records.append((len(_BLOCK_HEADER) + len(packed) + len(check), size))

    def close(self) -> None:
        try:
            if self._buf:
                self._submit(bytes(self._buf))
                self._buf.clear()
            while self._pending:
                self._drain_one()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)
        index = bytearray(b"\x00" + _varint(len(self._records)))
        for unpadded, size in self._records:
            index += _varint(unpadded) + _varint(size)
        index += _pad4(len(index))
        index += _crc32(bytes(index))
        backward = struct.pack("<I", len(index) // 4 - 1)
        self._out.write(bytes(index) + _crc32(backward + _FLAGS) + backward + _FLAGS + b"YZ")
