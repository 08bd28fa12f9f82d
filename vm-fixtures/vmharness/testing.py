"""Glue for the tests: tests/conftest.py's require_* helpers, found reliably.

`import conftest` is ambiguous where a directory has its own conftest.py (pytest registers
both under the name `conftest`), so take the one pytest loaded from tests/conftest.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

ROOT_CONFTEST = Path(__file__).resolve().parents[2] / "tests" / "conftest.py"


def root_conftest(config: pytest.Config) -> Any:
    for plugin in config.pluginmanager.get_plugins():
        file = getattr(plugin, "__file__", None)
        if file and Path(file).resolve() == ROOT_CONFTEST:
            return plugin
    raise AssertionError(f"{ROOT_CONFTEST} is not loaded")


def require_tool(config: pytest.Config, *tools: str) -> None:
    """Fail (never skip) when a program is missing: tests/conftest.py's require_tool."""
    root_conftest(config).require_tool(*tools)


def require_root(config: pytest.Config) -> None:
    root_conftest(config).require_root()
