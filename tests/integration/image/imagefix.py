"""Shared names for the image integration tests (conftest.py holds the fixtures)."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

USER, PASSWORD = "tester", "s3cret"


def _root_conftest() -> Any:
    # pytest imports every conftest.py as "conftest", so load the shared helpers by path.
    path = Path(__file__).resolve().parents[2] / "conftest.py"
    spec = importlib.util.spec_from_file_location("_bootc_tests_root_conftest", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


require_tool = _root_conftest().require_tool


@dataclass(frozen=True)
class Images:
    layout: Path  # every test image, tagged, in one OCI layout
    big_layer: str  # digest of the 4 MiB layer of "big"

    def oci(self, tag: str) -> str:
        return f"oci:{self.layout}:{tag}"
