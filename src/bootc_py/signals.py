"""SIGTERM and SIGHUP unwind like Ctrl-C.

systemd stopping a unit sends SIGTERM, a dropped ssh session SIGHUP; by default either kills
the process on the spot and skips every `with` and ExitStack (loop devices, mounts, temp dirs,
a partial image file stay behind). Here the first one raises `Terminated` in the main thread,
as SIGINT raises KeyboardInterrupt, so the same cleanup runs; cli.py turns it into exit
128 + signal number. Later signals are ignored so they cannot cut the cleanup short.
"""

from __future__ import annotations

import logging
import signal
from types import FrameType

log = logging.getLogger(__name__)

HANDLED = (signal.SIGTERM, signal.SIGHUP)


class Terminated(BaseException):
    """A handled termination signal arrived; a BaseException so `except Exception` lets it by."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


_received: list[int] = []


def _handler(signum: int, frame: FrameType | None) -> None:
    _received.append(signum)
    if len(_received) == 1:
        raise Terminated(signum)
    log.warning("%s received again while cleaning up: ignored",
                signal.Signals(signum).name)


def install() -> None:
    """Route SIGTERM and SIGHUP to `Terminated` (main thread only, from the CLI)."""
    _received.clear()
    for sig in HANDLED:
        signal.signal(sig, _handler)
