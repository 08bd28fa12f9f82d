"""Where a kickstart comes from: a path, `-` (stdin), an http(s) URL, or tftp:// (PXE)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from bootc_py.errors import CommandError, UsageError
from bootc_py.run import run

FETCH_TIMEOUT = 60  # seconds


@dataclass(frozen=True)
class KickstartText:
    text: str
    name: str                   # as the user gave it, for file:line messages
    base_dir: Path | None       # where a relative %include is looked up


def load(ks: str) -> KickstartText:
    if ks == "-":
        return KickstartText(sys.stdin.read(), "<stdin>", Path.cwd())
    scheme = urlparse(ks).scheme
    if scheme in ("http", "https"):
        import requests

        try:
            resp = requests.get(ks, timeout=FETCH_TIMEOUT)
            resp.raise_for_status()
        except requests.RequestException as exc:
            raise UsageError(f"cannot fetch the kickstart {ks}: {exc}") from exc
        return KickstartText(resp.text, ks, None)
    if scheme == "tftp":
        try:  # curl speaks TFTP; Python's standard library does not
            text = run(["curl", "--silent", "--show-error", "--fail", "--max-time",
                        str(FETCH_TIMEOUT), ks], capture=True).stdout
        except CommandError as exc:
            raise UsageError(f"cannot fetch the kickstart {ks}: {exc.message}") from exc
        return KickstartText(text, ks, None)
    if scheme:
        raise UsageError(f"unsupported kickstart location {ks}",
                         "give a path, -, an http(s):// or a tftp:// URL")
    path = Path(ks)
    if not path.is_file():
        raise UsageError(f"kickstart {ks} does not exist")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read the kickstart {ks}: {exc}") from exc
    return KickstartText(text, ks, path.resolve().parent)
