"""run(), the one subprocess boundary: nothing can hang it, nothing waits on a terminal, and
parsed output is in the C locale."""

from __future__ import annotations

import time

import pytest

from bootc_py.errors import TimeoutExpired
from bootc_py.run import output, run


def test_a_hung_program_is_stopped_at_its_timeout() -> None:
    start = time.monotonic()
    with pytest.raises(TimeoutExpired) as err:
        run(["sleep", "30"], timeout=0.5)
    assert time.monotonic() - start < 5
    assert err.value.message.startswith("sleep did not finish within 0.5 s and was stopped")


def test_stdin_is_dev_null() -> None:
    # `cat` with an inherited stdin would wait for input (under systemd: forever).
    assert output(["cat"], timeout=10) == ""


def test_captured_output_is_in_the_c_locale() -> None:
    assert output(["sh", "-c", "echo $LC_ALL"], env={"LANG": "de_DE.UTF-8"}) == "C"
