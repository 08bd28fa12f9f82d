"""The libostree helper's answer survives libostree's own stdout chatter.

libostree prints "Bootloader updated; bootconfig swap: ..." to stdout from write_deployments
under systemd-boot; mixed into the helper's JSON answer it broke every later step of an
update there (rollback to the fallback after a failed boot, set_default). Here a
sitecustomize makes libostree's Sysroot.load print that line to fd 1, as the C library does.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bootc_py.store.sysroot import Sysroot
from testlib import require_tool

CHATTER = '''\
import os
import gi
gi.require_version("OSTree", "1.0")
from gi.repository import OSTree
_load = OSTree.Sysroot.load
def load(self, *args):
    os.write(1, b"Bootloader updated; bootconfig swap: yes; bootversion: boot.1.1, "
                b"deployment count change: 0\\n")
    return _load(self, *args)
OSTree.Sysroot.load = load
'''


def test_library_output_on_stdout_does_not_spoil_the_answer(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require_tool("ostree")
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(CHATTER)
    (tmp_path / "sysroot").mkdir()
    sysroot = Sysroot.init(tmp_path / "sysroot", "default")
    monkeypatch.setenv("PYTHONPATH", str(site))
    assert sysroot.deployments() == ()
