"""The PXE bundle's .xz writer: what it writes is what xz (the reference decoder) and
Python's lzma read back, stored or compressed block by block."""

from __future__ import annotations

import io
import lzma
import os
import subprocess
from pathlib import Path

import pytest

from bootc_py.artifacts.xz_store import BLOCK, XzWriter, encode_block
from testlib import require_tool

RANDOM = os.urandom(3 * BLOCK + 12345)
CASES = {
    "empty": b"",
    "one byte": b"a",
    "one stored chunk": RANDOM[:65536],
    "a chunk and a byte": RANDOM[:65537],
    "zeros past a block": b"\0" * (BLOCK + 1),
    "stored, compressed, stored": RANDOM[:2 * BLOCK] + b"initramfs " * BLOCK + RANDOM[-100:],
}


def xz_bytes(data: bytes, piece: int = 10240, jobs: int = 2) -> bytes:
    out = io.BytesIO()
    with XzWriter(out, jobs) as xz:
        for start in range(0, len(data), piece):
            xz.write(data[start:start + piece])
    return out.getvalue()


@pytest.mark.host_tools  # xz, the reference decoder, reading a file of tmp_path
@pytest.mark.parametrize("name", CASES)
def test_xz_and_lzma_read_back_what_was_written(name: str, tmp_path: Path) -> None:
    require_tool("xz")
    data = CASES[name]
    packed = tmp_path / "t.xz"
    packed.write_bytes(xz_bytes(data))
    assert lzma.decompress(packed.read_bytes(), format=lzma.FORMAT_XZ) == data
    res = subprocess.run(["xz", "--decompress", "--stdout", str(packed)], capture_output=True,
                         check=False)
    assert res.returncode == 0, res.stderr
    assert res.stdout == data
    listed = subprocess.run(["xz", "--list", "--robot", str(packed)], capture_output=True,
                            text=True, check=True).stdout
    # xz --list reads the index: the blocks (one per MiB, CRC32-checked) and the size.
    totals = next(line.split("\t") for line in listed.splitlines() if line.startswith("totals"))
    assert int(totals[2]) == -(-len(data) // BLOCK) and int(totals[4]) == len(data), listed
    assert totals[6] == "CRC32"


def test_incompressible_data_is_stored_and_compressible_data_is_not() -> None:
    assert len(xz_bytes(RANDOM)) < len(RANDOM) * 1.001  # stored: a few bytes per 64 KiB
    assert len(xz_bytes(b"initramfs " * BLOCK)) < BLOCK  # 10 MiB of repeats: compressed
    stored = encode_block(RANDOM[:BLOCK])
    assert stored[0] == 0x01 and stored[-1] == 0x00  # uncompressed chunks, then the end


def test_an_error_inside_leaves_no_footer() -> None:
    out = io.BytesIO()
    with pytest.raises(RuntimeError), XzWriter(out) as xz:
        xz.write(RANDOM[:BLOCK + 1])
        raise RuntimeError("the tar failed")
    with pytest.raises(lzma.LZMAError):
        lzma.decompress(out.getvalue(), format=lzma.FORMAT_XZ)
