"""Set GPT partition type GUIDs in place.

libparted 3.5 (Debian 12, which the installed hosts run) can only set the types it has flags
for; the discoverable root type needs `ped_partition_set_type_uuid` (parted > 3.5). So after
pyparted has written the table, the type GUIDs it could not set are patched here: in both the
primary and the backup table, with both CRCs recomputed. (`sgdisk --typecode` does the same but
sleeps a second and makes the kernel drop the partitions of a loop device.)
"""

from __future__ import annotations

import os
import struct
import uuid
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bootc_py.errors import DiskError

SIGNATURE = b"EFI PART"


@dataclass(frozen=True)
class _Header:
    lba: int
    raw: bytes          # header_size bytes
    alternate_lba: int
    entries_lba: int
    entry_count: int
    entry_size: int
    entries_crc: int


def _read_header(fd: int, lba: int, sector_size: int, where: Path) -> _Header:
    block = os.pread(fd, sector_size, lba * sector_size)
    if block[:8] != SIGNATURE:
        raise DiskError(f"{where}: no GPT header at sector {lba}")
    (size,) = struct.unpack_from("<I", block, 12)
    if not 92 <= size <= sector_size:
        raise DiskError(f"{where}: GPT header at sector {lba} has an invalid size {size}")
    raw = block[:size]
    (crc,) = struct.unpack_from("<I", raw, 16)
    if zlib.crc32(raw[:16] + b"\0\0\0\0" + raw[20:]) != crc:
        raise DiskError(f"{where}: GPT header at sector {lba} fails its CRC check")
    my_lba, alternate = struct.unpack_from("<QQ", raw, 24)
    entries_lba, count, entry_size, entries_crc = struct.unpack_from("<QIII", raw, 72)
    if my_lba != lba or entry_size < 128:
        raise DiskError(f"{where}: GPT header at sector {lba} is inconsistent")
    return _Header(lba, raw, alternate, entries_lba, count, entry_size, entries_crc)


def _patched(fd: int, hdr: _Header, sector_size: int, types: Mapping[int, str],
             where: Path) -> list[tuple[int, bytes]]:
    """(offset, bytes) writes that set `types` in the table of `hdr`."""
    offset = hdr.entries_lba * sector_size
    entries = bytearray(os.pread(fd, hdr.entry_count * hdr.entry_size, offset))
    if zlib.crc32(entries) != hdr.entries_crc:
        raise DiskError(f"{where}: the GPT entries of the header at sector {hdr.lba} fail "
                        "their CRC check")
    for number, guid in types.items():
        if not 1 <= number <= hdr.entry_count:
            raise DiskError(f"{where}: no GPT entry {number}")
        at = (number - 1) * hdr.entry_size
        if entries[at:at + 16] == bytes(16):
            raise DiskError(f"{where}: GPT entry {number} is unused")
        entries[at:at + 16] = uuid.UUID(guid).bytes_le  # GUIDs are stored mixed-endian
    raw = bytearray(hdr.raw)
    struct.pack_into("<I", raw, 88, zlib.crc32(entries))
    struct.pack_into("<I", raw, 16, 0)
    struct.pack_into("<I", raw, 16, zlib.crc32(raw))
    return [(offset, bytes(entries)), (hdr.lba * sector_size, bytes(raw))]


def set_type_guids(device: Path, sector_size: int, types: Mapping[int, str]) -> None:
    """Set the type GUID of partitions `types` (number -> GUID) in both GPT copies."""
    if not types:
        return
    fd = os.open(device, os.O_RDWR)
    try:
        primary = _read_header(fd, 1, sector_size, device)
        backup = _read_header(fd, primary.alternate_lba, sector_size, device)
        # Check both copies before writing either.
        writes = [w for hdr in (primary, backup)
                  for w in _patched(fd, hdr, sector_size, types, device)]
        for offset, data in writes:
            os.pwrite(fd, data, offset)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_type_guids(device: Path, sector_size: int) -> dict[int, str]:
    """Type GUIDs (upper case) of the used entries of the primary table."""
    fd = os.open(device, os.O_RDONLY)
    try:
        hdr = _read_header(fd, 1, sector_size, device)
        entries = os.pread(fd, hdr.entry_count * hdr.entry_size, hdr.entries_lba * sector_size)
    finally:
        os.close(fd)
    out = {}
    for i in range(hdr.entry_count):
        raw = entries[i * hdr.entry_size:i * hdr.entry_size + 16]
        if raw != bytes(16):
            out[i + 1] = str(uuid.UUID(bytes_le=raw)).upper()
    return out
