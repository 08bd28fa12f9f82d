"""List the files of an initramfs (what `lsinitrd` shows), without dracut on the host.

An initramfs is a sequence of newc cpio archives: uncompressed ones first (early microcode),
then one compressed with gzip, zstd or xz.
"""

from __future__ import annotations

import lzma
import zlib
from pathlib import Path

NEWC = (b"070701", b"070702")
TRAILER = "TRAILER!!!"


def _parse_cpio(data: bytes, pos: int, names: list[str]) -> int:
    """Read one newc archive from `pos`; append its names; return the offset after it."""
    while True:
        if data[pos:pos + 6] not in NEWC:
            raise ValueError(f"not a newc cpio header at offset {pos}")
        fields = [int(data[pos + 6 + 8 * i: pos + 14 + 8 * i], 16) for i in range(13)]
        filesize, namesize = fields[6], fields[11]
        name_start = pos + 110
        name = data[name_start:name_start + namesize - 1].decode(errors="replace")
        pos = (name_start + namesize + 3) & ~3
        pos = (pos + filesize + 3) & ~3
        if name == TRAILER:
            return pos
        names.append(name)


def _decompress(data: bytes) -> bytes:
    if data[:2] == b"\x1f\x8b":
        d = zlib.decompressobj(wbits=31)
        return d.decompress(data)
    if data[:4] == b"\x28\xb5\x2f\xfd":
        import zstandard

        return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    if data[:6] == b"\xfd7zXZ\x00":
        return lzma.decompress(data)
    raise ValueError(f"unknown initramfs compression (magic {data[:6]!r})")


def list_files(path: Path) -> list[str]:
    data = path.read_bytes()
    names: list[str] = []
    pos = 0
    while pos < len(data):
        if data[pos:pos + 6] in NEWC:
            pos = _parse_cpio(data, pos, names)
            while pos < len(data) and data[pos] == 0:
                pos += 1
            continue
        inner = _decompress(data[pos:])
        ipos = 0
        while ipos < len(inner) and inner[ipos:ipos + 6] in NEWC:
            ipos = _parse_cpio(inner, ipos, names)
            while ipos < len(inner) and inner[ipos] == 0:
                ipos += 1
        break
    return names
