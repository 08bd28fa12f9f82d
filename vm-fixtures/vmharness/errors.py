"""Harness errors: their message names what was awaited and ends with the serial tail."""

from __future__ import annotations


class VMError(Exception):
    """The VM could not be started or driven."""


class VMTimeout(VMError):
    """Something awaited did not happen in time."""


class VMExited(VMError):
    """qemu ended while something was still awaited."""
