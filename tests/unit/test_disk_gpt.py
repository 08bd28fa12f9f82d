"""The GPT as written by apply.write_table (pyparted + gpt.py) into a plain sparse file: no
device, no subprocess. Read back with libparted and with gpt.py's own reader."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import parted
import pytest

from bootc_py.disk import gpt
from bootc_py.disk.apply import write_table
from bootc_py.disk.gpt import read_type_guids, set_type_guids
from bootc_py.disk.model import GiB, MiB
from bootc_py.disk.plan import PartType, plan_disk
from bootc_py.errors import DiskError

SIZE = 4 * GiB


def image(path: Path, size: int = SIZE) -> Path:
    with open(path, "wb") as fh:
        fh.truncate(size)
    return path


def head(path: Path) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(64 * 1024)


def poke(path: Path, offset: int, data: bytes) -> None:
    fd = os.open(path, os.O_RDWR)
    try:
        os.pwrite(fd, data, offset)
    finally:
        os.close(fd)


@pytest.mark.parametrize("kwargs", [{}, {"bootloader": "systemd", "bios": False},
                                    {"uefi": False, "root_size": GiB}])
def test_table_matches_the_plan(tmp_path: Path, kwargs: dict[str, Any]) -> None:
    f = image(tmp_path / "disk.raw")
    plan = plan_disk(SIZE, **kwargs)
    write_table(f, plan)
    assert read_type_guids(f, 512) == {p.number: p.type_guid for p in plan.partitions}
    dev = parted.getDevice(str(f))
    try:
        disk = parted.newDisk(dev)  # libparted checks both headers and their CRCs
        assert disk.type == "gpt"
        got = [(p.number, p.geometry.start * 512, p.geometry.length * 512, p.name)
               for p in disk.partitions]
    finally:
        dev.removeFromCache()
    assert got == [(p.number, p.start_bytes, p.size_bytes, p.name) for p in plan.partitions]


def test_backup_table_is_patched_too(tmp_path: Path) -> None:
    f = image(tmp_path / "disk.raw")
    write_table(f, plan_disk(SIZE))
    backup_lba = SIZE // 512 - 1
    fd = os.open(f, os.O_RDONLY)
    try:
        primary = gpt._read_header(fd, 1, 512, f)
        assert primary.alternate_lba == backup_lba
        hdr = gpt._read_header(fd, backup_lba, 512, f)  # checks its CRC
        entries = os.pread(fd, hdr.entry_count * hdr.entry_size, hdr.entries_lba * 512)
    finally:
        os.close(fd)
    root = entries[3 * hdr.entry_size:3 * hdr.entry_size + 16]
    assert str(uuid.UUID(bytes_le=root)).upper() == PartType.ROOT_X86_64


def test_refuses_a_corrupt_table(tmp_path: Path) -> None:
    f = image(tmp_path / "disk.raw")
    write_table(f, plan_disk(SIZE))
    poke(f, 2 * 512 + 100, b"\xff")  # inside the primary entries array
    with pytest.raises(DiskError, match="fail their CRC check"):
        set_type_guids(f, 512, {1: PartType.LINUX_FS})
    with pytest.raises(DiskError, match="no GPT header at sector 1"):
        set_type_guids(image(tmp_path / "blank.raw", 64 * MiB), 512, {1: PartType.ESP})


def test_nothing_is_written_when_one_copy_is_bad(tmp_path: Path) -> None:
    f = image(tmp_path / "disk.raw")
    write_table(f, plan_disk(SIZE))
    before = head(f)
    poke(f, SIZE - 512 - 16384 + 7, b"\xff")  # inside the backup entries array
    with pytest.raises(DiskError, match="fail their CRC check"):
        set_type_guids(f, 512, {2: PartType.LINUX_FS})
    assert head(f) == before


def test_refuses_unused_entries(tmp_path: Path) -> None:
    f = image(tmp_path / "disk.raw")
    write_table(f, plan_disk(SIZE))
    with pytest.raises(DiskError, match="GPT entry 5 is unused"):
        set_type_guids(f, 512, {5: PartType.ESP})
    assert read_type_guids(f, 512)[4] == PartType.ROOT_X86_64
