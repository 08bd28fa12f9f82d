"""Step logging, byte progress bars and the machine-readable `--progress-fd` stream.

Humans get a timed step log on stderr and tqdm bars for byte-heavy work; programs get JSON
lines on the fd given with `--progress-fd`, in the shape bootc uses (`Start`, `ProgressBytes`,
`ProgressSteps`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from bootc_py import __version__
from bootc_py.errors import UsageError

log = logging.getLogger("bootc_py")

API_VERSION = "org.containers.bootc.progress/v1"


@dataclass
class _Reporter:
    progress: IO[str] | None = None
    bars: bool = True
    lock: threading.Lock = field(default_factory=threading.Lock)

    def emit(self, event: dict[str, Any]) -> None:
        if self.progress is None:
            return
        with self.lock:
            self.progress.write(json.dumps(event, separators=(",", ":")) + "\n")
            self.progress.flush()


_reporter = _Reporter()


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if record.levelno >= logging.WARNING:
            return f"{record.levelname.lower()}: {msg}"
        return msg


def setup(verbose: int = 0, progress_fd: int | None = None, bars: bool | None = None) -> None:
    """Configure logging once, from the CLI. verbose: 0 steps only, 1 info, 2 debug."""
    root = logging.getLogger("bootc_py")
    root.handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose >= 2 else logging.INFO)
    root.propagate = False
    _reporter.bars = sys.stderr.isatty() if bars is None else bars
    if progress_fd is not None:
        try:  # a closed or read-only descriptor fails here, not mid-install
            _reporter.progress = os.fdopen(progress_fd, "w", buffering=1, closefd=False)
            _reporter.emit({"type": "Start", "version": __version__, "apiVersion": API_VERSION})
        except OSError as exc:
            _reporter.progress = None
            raise UsageError(f"--progress-fd {progress_fd}: {exc.strerror}",
                             "open that descriptor for writing, e.g. "
                             f"'{progress_fd}>progress.json'") from None


def emit(event: dict[str, Any]) -> None:
    """Write one JSON event to the progress fd (no-op without `--progress-fd`)."""
    _reporter.emit(event)


@contextlib.contextmanager
def step(name: str, description: str | None = None) -> Iterator[None]:
    """A named, timed step: logs its start and its duration, or that it failed."""
    desc = description or name
    log.info("==> %s", desc)
    start = time.monotonic()
    try:
        # Inside the try: a signal that arrives the moment a --progress-fd reader sees the
        # step start (SIGTERM from a supervisor) still says which step it stopped.
        emit({"type": "ProgressSteps", "task": name, "description": desc, "id": name,
              "stepsCached": 0, "steps": 0, "stepsTotal": 1, "subtasks": []})
        yield
    except BaseException:
        log.info("    %s failed after %.1fs", name, time.monotonic() - start)
        raise
    elapsed = time.monotonic() - start
    log.info("    %s done in %.1fs", name, elapsed)
    emit({"type": "ProgressSteps", "task": name, "description": desc, "id": name,
          "stepsCached": 0, "steps": 1, "stepsTotal": 1, "subtasks": [],
          "elapsed": round(elapsed, 3)})


class ByteProgress:
    """A byte counter shown as a tqdm bar and mirrored to the progress fd. Thread-safe."""

    def __init__(self, task: str, description: str, total: int | None, ident: str) -> None:
        self.task = task
        self.description = description
        self.total = total
        self.ident = ident
        self.done = 0
        self._lock = threading.Lock()
        self._last_emit = 0.0
        # Imported here: tqdm (with importlib.metadata) is ~0.15 s of CPU that a verb showing
        # no bar, such as `upgrade --check`, should not pay at start-up.
        from tqdm import tqdm

        self._bar = tqdm(total=total, desc=description, unit="B", unit_scale=True,
                         unit_divisor=1024, disable=not _reporter.bars, leave=False,
                         file=sys.stderr)

    def update(self, n: int) -> None:
        with self._lock:
            self.done += n
            self._bar.update(n)
            now = time.monotonic()
            if now - self._last_emit >= 0.5:
                self._last_emit = now
                self._emit()

    def _emit(self) -> None:
        emit({"type": "ProgressBytes", "task": self.task, "description": self.description,
              "id": self.ident, "bytesCached": 0, "bytes": self.done,
              "bytesTotal": self.total or 0, "stepsCached": 0, "steps": 0, "stepsTotal": 1,
              "subtasks": []})

    def close(self) -> None:
        with self._lock:
            self._emit()
            self._bar.close()


@contextlib.contextmanager
def progress_bytes(task: str, description: str, total: int | None,
                   ident: str | None = None) -> Iterator[ByteProgress]:
    bar = ByteProgress(task, description, total, ident or task)
    try:
        yield bar
    finally:
        bar.close()
