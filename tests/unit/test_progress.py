"""--progress-fd: JSON lines in bootc's shape, for programs driving bootc-py."""

from __future__ import annotations

import json
import os

from bootc_py import log


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
