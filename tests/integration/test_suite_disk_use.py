"""The suite's own disk use stays bounded: a passed test's tmp_path goes, immutable ostree
files included; a failed test's stays for the post-mortem (CI once died of ENOSPC because
every run's images and sysroots stayed under /tmp/pytest-of-root)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from testlib import require_tool
from tmpspace import remove_tree, shortfall, unlock_old_sessions

REPO = Path(__file__).resolve().parents[2]

INNER = '''
import subprocess

def _immutable(tmp_path, name):
    (tmp_path / "deploy").mkdir()
    (tmp_path / "deploy" / "usr").mkdir()
    (tmp_path / "deploy" / "usr" / name).write_bytes(b"x" * 4096)
    subprocess.run(["chattr", "+i", str(tmp_path / "deploy")], check=True)
    (tmp_path / "where").write_text(str(tmp_path))

def test_passes(tmp_path):
    _immutable(tmp_path, "kept-by-ostree")

def test_fails(tmp_path):
    _immutable(tmp_path, "post-mortem")
    assert False, "fails on purpose"
'''


def _inner_run(tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], Path]:
    (tmp_path / "inner").mkdir()
    (tmp_path / "inner" / "test_inner.py").write_text(INNER)
    basetemp = tmp_path / "bt"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist",
         "-p", "tmpspace",
         "-c", str(REPO / "pyproject.toml"), "--rootdir", str(tmp_path),
         "-o", "addopts=", "--basetemp", str(basetemp), str(tmp_path / "inner")],
        env={"PYTHONPATH": str(REPO / "tests"), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        capture_output=True, text=True, check=False)
    return proc, basetemp


def test_a_passed_tests_immutable_files_are_removed_a_failed_ones_kept(tmp_path: Path) -> None:
    require_tool("chattr")
    proc, basetemp = _inner_run(tmp_path)
    try:
        assert "1 failed, 1 passed" in proc.stdout, proc.stdout + proc.stderr
        left = sorted(p.name for p in basetemp.iterdir() if p.is_dir() and not p.is_symlink())
        assert left == ["test_fails0"], left
        assert (basetemp / "test_fails0" / "deploy" / "usr" / "post-mortem").is_file()
    finally:
        assert remove_tree(basetemp)


def test_nothing_is_removed_through_a_mount(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "mnt").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "precious").write_text("keep")
    subprocess.run(["mount", "--bind", str(tmp_path / "outside"), str(tree / "mnt")], check=True)
    try:
        assert remove_tree(tree) is False
        assert (tmp_path / "outside" / "precious").read_text() == "keep"
    finally:
        subprocess.run(["umount", str(tree / "mnt")], check=True)
    assert remove_tree(tree) and not tree.exists()


def test_too_little_free_space_is_one_line_naming_the_filesystem(tmp_path: Path) -> None:
    assert shortfall(tmp_path, need_gib=0) is None
    line = shortfall(tmp_path, need_gib=10**9)
    assert line is not None and "\n" not in line
    assert line.startswith(f"{tmp_path} has ") and "GiB free" in line
    assert "need 1000000000 GiB" in line


def test_only_finished_sessions_are_unlocked(tmp_path: Path) -> None:
    """A run starting beside another (a developer's beside CI) unlocks the leftovers of
    finished runs, never the immutable files of the run still going."""
    require_tool("chattr")
    child = subprocess.Popen(["true"])
    child.wait()
    for name, pid in (("pytest-1", child.pid), ("pytest-2", None), ("pytest-3", os.getpid())):
        session = tmp_path / name
        (session / "deploy").mkdir(parents=True)
        if pid is not None:
            (session / ".lock").write_text(str(pid))
        subprocess.run(["chattr", "+i", str(session / "deploy")], check=True)
    try:
        unlock_old_sessions(tmp_path)
        attrs = {name: subprocess.run(["lsattr", "-d", str(tmp_path / name / "deploy")],
                                      check=True, capture_output=True, text=True
                                      ).stdout.split()[0]
                 for name in ("pytest-1", "pytest-2", "pytest-3")}
        assert "i" not in attrs["pytest-1"] and "i" not in attrs["pytest-2"], attrs
        assert "i" in attrs["pytest-3"], attrs  # this very run: still going
    finally:
        assert remove_tree(tmp_path)
