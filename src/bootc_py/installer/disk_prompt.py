"""The live installer's console prompt: which of several empty disks to erase, and a yes.

Anaconda asks when its kickstart leaves the disk open and the run is attended; so does bootc-py's
live installer (installer/live.py), on /dev/console (the serial port when console=ttyS0 is the
last console=). An unattended run never comes here: it refuses, naming the disks. The dialogue is
a pure function of its lines in and out, so it is tested without a console.
"""

from __future__ import annotations

import contextlib
import os
import termios
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from bootc_py.errors import UsageError

CONSOLE = Path("/dev/console")


@dataclass(frozen=True)
class Candidate:
    device: str        # /dev/vdb
    description: str   # what an operator recognises it by: size, model, serial


def ask(disks: Sequence[Candidate], read: Callable[[], str],
        write: Callable[[str], None]) -> str:
    """Ask which disk (by number or name), then for `yes` to erase it; returns the device.

    `read` returns one line, "" at end of input. A wrong number asks again; anything but `yes`
    at the confirmation goes back to the choice; `q` or the end of input stops: nothing is
    written, a UsageError says so."""
    menu = "".join(f"  {i}) {d.device}  {d.description}\n" for i, d in enumerate(disks, 1))
    while True:
        write("bootc-py live installer: several empty disks; which one should this image "
              f"be installed to? It will be erased.\n{menu}"
              f"Disk [1-{len(disks)}], or q to stop without installing: ")
        answer = read()
        if not answer:
            raise UsageError("no disk was chosen at the console (end of input): nothing "
                             "was written", "name the disk in the kickstart "
                             "(ignoredisk --only-use) to install unattended")
        answer = answer.strip()
        if answer.lower() in ("q", "quit"):
            raise UsageError("stopped at the console: no disk was chosen, nothing was written")
        chosen = next((d for i, d in enumerate(disks, 1)
                       if answer in (str(i), d.device, d.device.removeprefix("/dev/"))), None)
        if chosen is None:
            write(f"'{answer}' is not one of the disks above: type its number.\n")
            continue
        write(f"Erase everything on {chosen.device} ({chosen.description}) and install? "
              "Type yes to go on, anything else to choose again: ")
        if read().strip().lower() == "yes":
            write(f"Installing onto {chosen.device}.\n")
            return chosen.device


@contextlib.contextmanager
def console(path: Path = CONSOLE) -> Iterator[tuple[Callable[[], str], Callable[[str], None]]]:
    """(read a line, write) on the console; typed-ahead input is dropped first, so a stray
    keystroke from before the question is never taken as its answer."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    except OSError as exc:
        raise UsageError(f"cannot ask which disk: {path}: {exc.strerror}",
                         "name the disk in the kickstart (ignoredisk --only-use)") from exc
    try:
        with contextlib.suppress(termios.error):
            termios.tcflush(fd, termios.TCIFLUSH)
        with open(fd, encoding="utf-8", errors="replace", closefd=False) as reader, \
                open(fd, "w", encoding="utf-8", closefd=False) as writer:
            def write(text: str) -> None:
                writer.write(text)
                writer.flush()
            yield reader.readline, write
    finally:
        os.close(fd)
