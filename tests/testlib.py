"""Helpers shared by the test suites (tests/ is on sys.path, see tests/conftest.py)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from bootc_py.disk.discover import parse_mountinfo, parse_swaps
from bootc_py.run import output, run


def require_tool(*tools: str) -> None:
    """Fail (not skip) the test when a program it needs is not installed."""
    missing = [t for t in tools if not (shutil.which(t) or shutil.which(t, path="/usr/sbin:/sbin"))]
    if missing:
        pytest.fail(f"missing tools: {', '.join(missing)} (run scripts/setup.sh)", pytrace=False)


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("this test needs root (loop devices, mounts)", pytrace=False)


def cleanup_under(root: Path) -> list[str]:
    """Undo whatever a test under `root` left behind; return what that was."""
    leaked = []
    ours = f"{root}/"
    loops = json.loads(output(["losetup", "--list", "--json"]) or '{"loopdevices": []}')
    our_loops = [d["name"] for d in loops.get("loopdevices", [])
                 if (d.get("back-file") or "").startswith(ours)]
    swaps = parse_swaps(Path("/proc/swaps").read_text())
    for name in swaps:
        if name.startswith(ours) or any(name.startswith(f"{lo}p") for lo in our_loops):
            leaked.append(f"swap {name}")
            run(["swapoff", name], check=False)
    mounts = parse_mountinfo(Path("/proc/self/mountinfo").read_text())
    for m in sorted(mounts, key=lambda m: -len(m.mountpoint)):
        if m.mountpoint.startswith(ours) or any(m.source == lo or m.source.startswith(f"{lo}p")
                                                  for lo in our_loops):
            leaked.append(f"mount {m.mountpoint}")
            run(["umount", "--lazy", m.mountpoint], check=False)
    for name in our_loops:
        leaked.append(f"loop {name}")
        run(["losetup", "--detach", name], check=False)
    return leaked


def check_golden(path: Path, text: str) -> None:
    """`text` equals the golden file at `path`; BOOTC_PY_UPDATE_GOLDEN=1 rewrites it instead
    (after an intended change)."""
    if os.environ.get("BOOTC_PY_UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"missing golden file {path} (set BOOTC_PY_UPDATE_GOLDEN=1)"
    assert text == path.read_text()
