"""SIGTERM and SIGHUP unwind like Ctrl-C.

systemd stopping a unit sends SIGTERM, a dropped ssh session SIGHUP; by default either kills
the process on the spot and skips every `with` and ExitStack (loop devices, mounts, temp dirs,
a partial image file stay behind). Here the first one raises `Terminated` in the main thread,
as SIGINT raises KeyboardInterrupt, so the same cleanup runs; cli.py turns it into exit
128 + signal number. SIGINT still raises KeyboardInterrupt, but only as the first signal:
any signal after the first (a second Ctrl-C, a Ctrl-C after systemd's SIGTERM) is ignored so
it cannot cut the cleanup short.
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
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise Terminated(signum)
    log.warning("%s received while cleaning up: ignored",
                signal.Signals(signum).name)


def install() -> None:
    """Route SIGTERM and SIGHUP to `Terminated` and SIGINT to KeyboardInterrupt, each only as
    the first signal (main thread only, from the CLI). A signal ignored when bootc-py started
    stays ignored: `nohup bootc-py ...` must survive the hangup it asked to survive."""
    _received.clear()
    for sig in (*HANDLED, signal.SIGINT):
        if signal.getsignal(sig) != signal.SIG_IGN:
            signal.signal(sig, _handler)


def ignore() -> None:
    """Ignore every handled signal from now on: the cleanup is done and the process is exiting.
    Python restores the default handlers while it shuts down, so a second signal arriving then
    would still kill the process and hide the exit code the first one chose."""
    for sig in (*HANDLED, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
