"""Unit tests never touch the host: any real subprocess fails the test.

Tests that legitimately run a host program (the linters) mark themselves `host_tools`.
"""

from __future__ import annotations

import subprocess
from typing import Any

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "host_tools: a unit test allowed to run host programs")


@pytest.fixture(autouse=True)
def _no_subprocess(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.node.get_closest_marker("host_tools"):
        return

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"unit test tried to run a program: {args[0] if args else kwargs}")

    monkeypatch.setattr(subprocess, "Popen", refuse)
