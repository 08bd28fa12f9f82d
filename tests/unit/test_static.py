"""mypy --strict and ruff are part of the test suite."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


# The product, and what every VM test stands on: the harness, the sample-image builder and the
# guest's check script (checked from vm-fixtures/, where they import each other).
@pytest.mark.host_tools
@pytest.mark.parametrize(("where", "paths"), [
    (".", ("src/bootc_py",)),
    ("vm-fixtures", ("vmharness", "fixture_image", "guest/check.py")),
], ids=["src", "vm-harness"])
def test_mypy_strict(where: str, paths: tuple[str, ...]) -> None:
    res = subprocess.run([str(BIN / "mypy"), "--strict", *paths], cwd=REPO / where,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.host_tools
def test_ruff() -> None:
    res = subprocess.run([str(BIN / "ruff"), "check", "src", "tests", "vm-fixtures", "benchmarks"],
                         cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
