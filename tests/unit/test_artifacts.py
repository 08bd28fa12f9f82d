from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from bootc_py.artifacts.disk_image import _sha256, parse_types
from bootc_py.errors import UsageError


def test_sha256_of_sparse_file_matches_a_full_read(tmp_path: Path) -> None:
    path = tmp_path / "disk.raw"
    with open(path, "wb") as f:
        f.truncate(40 << 20)
        f.seek(3 << 20)
        f.write(os.urandom(12345))
        f.seek((20 << 20) + 7)
        f.write(b"x" * (2 << 20))
    assert _sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert _sha256(empty) == hashlib.sha256(b"").hexdigest()


def test_types_are_bib_names_and_directories() -> None:
    formats = parse_types(["qcow2,raw", "vhd", "qcow2"])
    assert [(f.name, f.directory, f.filename) for f in formats] == [
        ("qcow2", "qcow2", "disk.qcow2"), ("raw", "image", "disk.raw"),
        ("vhd", "vpc", "disk.vhd")]
    assert [f.name for f in parse_types([])] == ["qcow2"]
    with pytest.raises(UsageError, match="unknown image type 'iso9'"):
        parse_types(["iso9"])
