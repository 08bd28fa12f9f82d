"""Fixtures for the root integration tests: synthetic images and a CLI runner."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from synthetic import KVER, SyntheticImages, base_tree, build_image

from testlib import cleanup_under, require_root


@pytest.fixture(autouse=True)
def _nothing_left_behind(tmp_path: Path) -> Iterator[None]:
    """Every integration test runs as root and must leave no loop device, mount or swap behind
    under its tmp_path (they are undone here, and the test fails)."""
    require_root()
    yield
    leaked = cleanup_under(tmp_path)
    assert not leaked, f"the test left these behind: {leaked}"


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
