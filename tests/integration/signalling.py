"""Signal a running bootc-py at a step it reports on its --progress-fd stream."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest


def children(pid: int) -> set[int]:
    kids: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):  # the task ended meanwhile
            kids |= {int(k) for k in task.read_text().split()}
    return kids


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


def _keep_sending(proc: subprocess.Popen[bytes], sig: signal.Signals, log: Path) -> None:
    """Once the first signal is being handled (its step logs "failed after"), send `sig` every
    10 ms until the process exits: some land in the cleanup, some in the exit itself."""
    deadline = time.monotonic() + 10
    while "failed after" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.002)
    while proc.poll() is None:
        proc.send_signal(sig)
        time.sleep(0.01)


def signal_at(cmd: list[str], step: str, sig: signal.Signals, log: Path,
               env: dict[str, str], *, then: signal.Signals | None = None,
               delay: float = 0.2, ignored: bool = False) -> tuple[int, str, set[int]]:
    """Run `cmd`, send `sig` `delay` s after it starts `step` (and `then` while it cleans up);
    (exit code, stderr, its children then). With `ignored`, `cmd` starts with `sig` ignored,
    as `nohup` starts a program for SIGHUP."""
    def dispositions() -> None:
        # As a terminal or systemd starts it, whatever this test inherited: a shell's
        # background job (nohup ... &) ignores SIGINT and SIGHUP, and bootc-py keeps that.
        for s in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
            signal.signal(s, signal.SIG_DFL)
        if ignored:
            signal.signal(sig, signal.SIG_IGN)

    read_fd, write_fd = os.pipe()
    with open(log, "w+") as err:
        proc = subprocess.Popen([*cmd[:1], "--progress-fd", str(write_fd), *cmd[1:]],
                                stdout=subprocess.DEVNULL, stderr=err, pass_fds=(write_fd,),
                                env=env, preexec_fn=dispositions)
        os.close(write_fd)
        kids: set[int] = set()
        with os.fdopen(read_fd) as events:
            for line in events:
                event = json.loads(line)
                if event.get("type") == "ProgressSteps" and event["id"] == step \
                        and event["steps"] == 0:
                    time.sleep(delay)  # inside the step, most likely in a child program
                    kids = children(proc.pid)
                    proc.send_signal(sig)
                    if then is not None:  # a second Ctrl-C, or one after systemd's SIGTERM
                        _keep_sending(proc, then, log)
                    break
            else:
                pytest.fail(f"the install ended before step {step}: {log.read_text()}")
            rc = proc.wait(timeout=120)
        err.seek(0)
        return rc, err.read(), kids
