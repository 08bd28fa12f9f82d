"""The one error type of the image builder: a one-line message, shown without a traceback."""

from __future__ import annotations


class FixtureError(Exception):
    """An expected failure (a tool failed, a bad argument); `str()` is the whole message."""
