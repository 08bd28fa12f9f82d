"""Running host programs and reporting progress for the image builder."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from fixture_image.errors import FixtureError

# Debian package of each host program the builder runs (for the error hint).
PACKAGES = {
    "mmdebstrap": "mmdebstrap",
    "skopeo": "skopeo",
    "umoci": "umoci",
    "mkfs.ext4": "e2fsprogs",
}


def which(tool: str) -> str:
    found = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin:/usr/bin:/bin")
    if not found:
        pkg = PACKAGES.get(tool, tool)
        raise FixtureError(f"{tool} is not installed (apt-get install {pkg}, or scripts/setup.sh)")
    return found


def run(argv: Sequence[str | os.PathLike[str]], *, log: Path | None = None,
        cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    """Run a program; its output goes to `log` (or is captured); raise FixtureError on failure.

    Returns the captured stdout when no log file is given.
    """
    args = [os.fspath(a) for a in argv]
    args[0] = which(args[0])
    full_env = {**os.environ, **env} if env else None
    if log is not None:
        with open(log, "ab") as out:
            out.write(f"\n$ {shlex.join(args)}\n".encode())
            out.flush()
            proc = subprocess.run(args, stdin=subprocess.DEVNULL, stdout=out,
                                  stderr=subprocess.STDOUT, cwd=cwd, env=full_env, check=False)
        if proc.returncode != 0:
            tail = log.read_text(errors="replace").strip().splitlines()[-15:]
            raise FixtureError(
                f"{Path(args[0]).name} failed (exit {proc.returncode}); last lines of {log}:\n"
                + "\n".join(tail))
        return ""
    res = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                         cwd=cwd, env=full_env, check=False)
    if res.returncode != 0:
        msg = (res.stderr or res.stdout).strip().splitlines()
        raise FixtureError(f"{Path(args[0]).name} failed (exit {res.returncode}): "
                           + (msg[-1] if msg else "no output"))
    return res.stdout


def say(msg: str) -> None:
    """A progress message on stderr (long steps announce themselves and their duration)."""
    print(f"build-image: {msg}", file=sys.stderr, flush=True)


@contextmanager
def step(msg: str) -> Iterator[None]:
    say(f"{msg} ...")
    t0 = time.monotonic()
    yield
    say(f"{msg}: done in {time.monotonic() - t0:.1f} s")
