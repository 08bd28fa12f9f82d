"""--progress-fd: JSON lines in bootc's shape, for programs driving bootc-py."""

from __future__ import annotations

import io
import json
import logging
import os
import signal

import pytest

from bootc_py import log, signals


def test_progress_fd_events() -> None:
    read_fd, write_fd = os.pipe()
    try:
        log.setup(progress_fd=write_fd, bars=False)
        with log.step("deploy", "Deploying"):
            pass
        with log.progress_bytes("pull", "Pulling layer", 10, "sha256:abc") as bar:
            bar.update(4)
            bar.update(6)
    finally:
        log._reporter.progress = None
        os.close(write_fd)
    with os.fdopen(read_fd) as events:
        lines = [json.loads(line) for line in events.read().splitlines()]
    assert lines[0]["type"] == "Start" and lines[0]["apiVersion"]
    steps = [e for e in lines if e["type"] == "ProgressSteps"]
    assert [(e["task"], e["steps"], e["stepsTotal"]) for e in steps] == [
        ("deploy", 0, 1), ("deploy", 1, 1)]
    assert "elapsed" in steps[1]
    done = [e for e in lines if e["type"] == "ProgressBytes"][-1]
    assert (done["bytes"], done["bytesTotal"], done["id"]) == (10, 10, "sha256:abc")


class _SignalledReader(io.StringIO):
    """A --progress-fd reader that, like a supervisor watching for a step, sends SIGTERM the
    moment the step's start event is written."""

    def write(self, text: str) -> int:
        n = super().write(text)
        if '"steps":0' in text:
            os.kill(os.getpid(), signal.SIGTERM)
        return n


def test_a_signal_the_moment_a_step_starts_still_names_the_step(
        caplog: pytest.LogCaptureFixture) -> None:
    """CI once saw 'error: terminated by SIGTERM' with no '<step> failed after': the signal
    landed between the start event and the step's try."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}
    log._reporter.progress = _SignalledReader()
    try:
        signals.install()
        with caplog.at_level(logging.INFO, logger="bootc_py.log"), \
                pytest.raises(signals.Terminated), log.step("pull", "Pulling"):
            pytest.fail("the step's body ran after the signal")
    finally:
        log._reporter.progress = None
        for s, handler in saved.items():
            signal.signal(s, handler)
    assert "pull failed after" in caplog.text
