"""The VM tests' schedule (tests/conftest.py MEASURED_S, longest first over two workers) names
tests that exist: a renamed test that keeps its old name there counts as 60 s and starts
last, and one long test alone at the end idles the other worker (the ISO-as-CD test did, for
about 6 minutes of a CI run)."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def measured_names() -> list[str]:
    tree = ast.parse((TESTS / "conftest.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "MEASURED_S"
                                                for t in node.targets):
            return list(ast.literal_eval(node.value))
    raise AssertionError("tests/conftest.py has no MEASURED_S")


def vm_tests() -> set[str]:
    found = set()
    for path in (TESTS / "vm").glob("test_*.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                found.add(f"{path.name}::{node.name}")
    return found


def test_every_measured_name_is_a_vm_test() -> None:
    stale = sorted(set(measured_names()) - vm_tests())
    assert not stale, f"MEASURED_S in tests/conftest.py names tests that do not exist: {stale}"


def test_the_longest_vm_tests_are_measured() -> None:
    # Every test module that boots a guest for minutes has its tests listed.
    listed = {name.split("::")[0] for name in measured_names()}
    for module in ("test_update_host.py", "test_autoheal.py", "test_update_powercut.py",
                   "test_update_strategies.py", "test_installer_iso.py", "test_installer_pxe.py",
                   "test_takeover_boot.py", "test_kickstart_boot.py"):
        assert module in listed, module
