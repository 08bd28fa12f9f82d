"""Shared names for the image integration tests (conftest.py holds the fixtures)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from testlib import require_tool  # noqa: F401  (re-exported: the one require_tool)

USER, PASSWORD = "tester", "s3cret"


@dataclass(frozen=True)
class Images:
    layout: Path  # every test image, tagged, in one OCI layout
    big_layer: str  # digest of the 4 MiB layer of "big"

    def oci(self, tag: str) -> str:
        return f"oci:{self.layout}:{tag}"
