"""Shared test setup.

Markers come from the directory: tests/integration is `root`, tests/vm is `vm`; a module that
starts a docker-registry (tests/registry_fixture.py's Registry) is `registry`. The fast
iteration run is `pytest -m "not root and not vm"`; CI runs everything. A missing tool is a
failure, never a skip: use `require_tool()`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "vm-fixtures"))
sys.path.insert(0, str(REPO / "tests"))  # testlib and the shared test helpers

import registry_fixture  # noqa: E402
from testlib import require_root, require_tool  # noqa: E402,F401  (re-exported)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).relative_to(REPO).parts
        if len(parts) > 1 and parts[0] == "tests":
            if parts[1] == "integration":
                item.add_marker(pytest.mark.root)
            elif parts[1] == "vm":
                item.add_marker(pytest.mark.vm)
        # A module that starts a docker-registry (tests/registry_fixture.py) talks to one.
        if getattr(getattr(item, "module", None), "Registry", None) is registry_fixture.Registry:
            item.add_marker(pytest.mark.registry)
    # A VM proof that has never been seen passing is not part of the default run (a failure
    # there would block every other change from landing): deselected, so it is reported as
    # such and never counted as a pass. BOOTC_PY_RUN_UNPROVEN=1 runs them.
    if os.environ.get("BOOTC_PY_RUN_UNPROVEN") != "1":
        unproven = [item for item in items if item.get_closest_marker("unproven")]
        if unproven:
            config.hook.pytest_deselected(items=unproven)
            items[:] = [item for item in items if not item.get_closest_marker("unproven")]
