"""Run a bootc-py command with --progress-fd and return its wall time and each step's time
(the ProgressSteps events it reports), for the benchmarks that print per-step figures."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path


def run_steps(bootc_py: Path, args: list[str]) -> tuple[float, dict[str, float]]:
    """`bootc-py --progress-fd N ARGS...`: (wall seconds including a final sync, {step: s})."""
    read_fd, write_fd = os.pipe()
    start = time.monotonic()
    proc = subprocess.Popen([str(bootc_py), "--progress-fd", str(write_fd), *args],
                            pass_fds=(write_fd,), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    os.close(write_fd)
    with os.fdopen(read_fd) as events:
        lines = events.read().splitlines()
    _, err = proc.communicate()
    os.sync()  # the written bytes are on disk, not just in the page cache
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit(f"bootc-py {args[0]} failed:\n{err[-2000:]}")
    steps: dict[str, float] = {}
    for line in lines:
        event = json.loads(line)
        if event.get("type") == "ProgressSteps" and "elapsed" in event:
            steps[event["task"]] = event["elapsed"]
    return elapsed, steps
