"""The sample image's bootc-py layer carries pykickstart, which Debian 12 does not package."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fixture_image import bootclayer


@pytest.mark.host_tools
def test_vendored_pykickstart_imports_from_the_layer_tree(tmp_path: Path) -> None:
    bootclayer.vendor(tmp_path)
    dist = tmp_path / bootclayer.DIST_PACKAGES
    assert (dist / "pykickstart" / "version.py").is_file()
    assert not list(dist.rglob("__pycache__"))
    # The copy (first on the path) is what imports, and it has the F46 handler.
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import pykickstart.version as v; "
            "h = v.makeVersion(v.F46); print(type(h.commands['bootc']).__name__, "
            "v.__file__.startswith(sys.argv[1]))")
    out = subprocess.run([sys.executable, "-c", code, str(dist)], capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == ["F45_Bootc", "True"]


def test_a_version_other_than_the_pin_is_refused(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(bootclayer.VENDORED, "pykickstart", "0.1")
    with pytest.raises(SystemExit, match=r"pip install pykickstart==0\.1"):
        bootclayer.vendor(tmp_path)
