"""Keep the test run's disk use bounded.

A full run writes tens of GiB under pytest's basetemp (disk images, qcow2 overlays, ostree
sysroots). pytest removes a passed test's tmp_path only with `tmp_path_retention_policy =
"failed"`, and then with `rmtree(ignore_errors=True)`, which silently leaves every file ostree
made immutable; old sessions' directories are removed the same way. CI runs on the machine that
ran the previous CI, so the leftovers piled up until a run died of ENOSPC. Here: what pytest
could not remove is unlocked (`chattr -i`) and removed, never through a mount point, and a run
that needs disk starts only with enough free space.
"""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

# A run starts only with this much free: a full run held ~30 GiB under its basetemp when every
# tmp_path was kept (CI, stop 20); with passed tests' directories removed it needs less.
MIN_FREE_GIB = float(os.environ.get("BOOTC_PY_TEST_MIN_FREE_GIB", "25"))


def temp_root() -> Path:
    """Where pytest puts its numbered pytest-N directories (its own rule)."""
    base = Path(os.environ.get("PYTEST_DEBUG_TEMPROOT") or tempfile.gettempdir()).resolve()
    return base / f"pytest-of-{getpass.getuser()}"


def _mounted_under(path: Path) -> list[str]:
    prefix = f"{path}/"
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == str(path) or point.startswith(prefix):
            found.append(point)
    return found


def remove_tree(path: Path) -> bool:
    """Remove `path` entirely, immutable files included; False (and nothing removed) when
    something is still mounted under it."""
    if not path.exists():
        return True
    if _mounted_under(path):
        return False
    shutil.rmtree(path, ignore_errors=True)
    if path.exists():
        subprocess.run(["chattr", "-R", "-i", str(path)], stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        shutil.rmtree(path, ignore_errors=True)
    return not path.exists()


def _in_use(session: Path) -> bool:
    """A pytest session directory whose run is still going: its `.lock` (pytest's) names a
    live process. Another run on this machine (CI beside a developer's) is not a leftover."""
    try:
        pid = int((session / ".lock").read_text().strip())
    except (OSError, ValueError):
        return False
    try:
        os.kill(pid, 0)  # PermissionError: alive, someone else's
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def unlock_old_sessions(root: Path) -> None:
    """Make earlier sessions' leftovers removable, so pytest's retention can remove them; a
    session still running is left as it is (its ostree deployments stay immutable)."""
    if not root.is_dir():
        return
    for entry in root.iterdir():
        if (entry.is_dir() and not entry.is_symlink() and not _mounted_under(entry)
                and not _in_use(entry)):
            subprocess.run(["chattr", "-R", "-i", str(entry)], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)


def shortfall(root: Path, need_gib: float = MIN_FREE_GIB) -> str | None:
    """One line when the filesystem under `root` has less than `need_gib` free, else None."""
    probe = root if root.exists() else root.parent
    stat = os.statvfs(probe)
    free_gib = stat.f_bavail * stat.f_frsize / 2**30
    if free_gib >= need_gib:
        return None
    return (f"{probe} has {free_gib:.1f} GiB free; the root and VM tests need {need_gib:.0f} GiB "
            f"there: free space (old runs live in {root}) or set BOOTC_PY_TEST_MIN_FREE_GIB")


# The hooks: tests/conftest.py registers this module as a plugin.
_PASSED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.failed or (report.when == "call" and not report.passed):
        item.stash[_PASSED] = False
    return report


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    """A passed test's tmp_path is removed, immutable ostree files included (see tmpspace);
    a failed test's stays for the post-mortem."""
    path = (getattr(item, "funcargs", None) or {}).get("tmp_path")
    result = yield
    if isinstance(path, Path) and item.stash.get(_PASSED, True):
        remove_tree(path)
    return result
