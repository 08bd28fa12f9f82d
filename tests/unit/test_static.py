"""mypy --strict and ruff are part of the test suite."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@pytest.mark.host_tools
def test_mypy_strict() -> None:
    res = subprocess.run([str(BIN / "mypy"), "--strict", "src/bootc_py"], cwd=REPO,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.host_tools
def test_mypy_strict_vm_harness() -> None:
    """The VM harness, the sample-image builder and the guest's check script too: every VM
    test stands on them."""
    res = subprocess.run([str(BIN / "mypy"), "--strict", "vmharness", "fixture_image",
                          "guest/check.py"], cwd=REPO / "vm-fixtures", capture_output=True,
                         text=True)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.host_tools
def test_ruff() -> None:
    res = subprocess.run([str(BIN / "ruff"), "check", "src", "tests", "vm-fixtures", "benchmarks"],
                         cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
