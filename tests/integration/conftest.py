"""Fixtures for the root integration tests: synthetic images and a CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from synthetic import KVER, base_tree, build_image

BOOTC_PY = Path(sys.executable).parent / "bootc-py"


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str


def run_cli(*args: str, env: dict[str, str] | None = None) -> Result:
    proc = subprocess.run([str(BOOTC_PY), *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=900)
    return Result(proc.returncode, proc.stdout, proc.stderr)


@dataclass(frozen=True)
class SyntheticImages:
    layout: Path
    cache: Path

    def ref(self, tag: str) -> str:
        return f"oci:{self.layout}:{tag}"


def _top(variant: str):  # type: ignore[no-untyped-def]
    def fill(root: Path) -> None:
        (root / "usr/share/syn").mkdir(parents=True)
        (root / "usr/share/syn/variant").write_text(variant + "\n")
        (root / "etc").mkdir()
        (root / "etc/.wh.hostname").write_text("")
    return fill


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SyntheticImages]:
    work = tmp_path_factory.mktemp("synthetic")
    layout = work / "oci"
    build_image(layout, "v1", [base_tree, _top("v1")], work=work / "build",
                labels={"org.opencontainers.image.version": "1.0"})
    build_image(layout, "v2", [base_tree, _top("v2")], work=work / "build",
                labels={"org.opencontainers.image.version": "2.0"})
    build_image(layout, "nokernel", [lambda r: base_tree(r, kernels=())], work=work / "build")
    build_image(layout, "twokernels", [lambda r: base_tree(r, kernels=(KVER, "6.2.0-x"))],
                work=work / "build")
    yield SyntheticImages(layout, work / "cache")
