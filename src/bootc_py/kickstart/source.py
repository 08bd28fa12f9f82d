"""Where a kickstart comes from: a path, `-` (stdin), an http(s) URL, or tftp:// (PXE).

The same fetch serves `%include URL` and a relative %include inside a fetched kickstart
(resolved against that kickstart's URL, as Anaconda does).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from bootc_py.errors import CommandError, UsageError
from bootc_py.run import run

FETCH_TIMEOUT = 60  # seconds
URL_SCHEMES = ("http", "https", "tftp")


@dataclass(frozen=True)
class KickstartText:
    text: str
    name: str                   # as the user gave it, for file:line messages
    base: Path | str | None     # where a relative %include is looked up: a directory or a URL


def is_url(location: str) -> bool:
    return urlparse(location).scheme in URL_SCHEMES


def fetch(url: str) -> str:
    """The text at an http(s):// or tftp:// URL; a UsageError naming the URL otherwise."""
    scheme = urlparse(url).scheme
    if scheme in ("http", "https"):
        import requests

        try:
            resp = requests.get(url, timeout=FETCH_TIMEOUT)
            resp.raise_for_status()
        except requests.RequestException as exc:
            raise UsageError(f"cannot fetch the kickstart {url}: {exc}") from exc
        return resp.text
    if scheme == "tftp":
        try:  # curl speaks TFTP; Python's standard library does not
            return run(["curl", "--silent", "--show-error", "--fail", "--max-time",
                        str(FETCH_TIMEOUT), url], capture=True).stdout
        except CommandError as exc:
            raise UsageError(f"cannot fetch the kickstart {url}: {exc.message}") from exc
    raise UsageError(f"unsupported kickstart location {url}",
                     "give a path, -, an http(s):// or a tftp:// URL")


def load(ks: str) -> KickstartText:
    if ks == "-":
        return KickstartText(sys.stdin.read(), "<stdin>", Path.cwd())
    if urlparse(ks).scheme:
        return KickstartText(fetch(ks), ks, ks)
    path = Path(ks)
    if not path.is_file():
        raise UsageError(f"kickstart {ks} does not exist")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read the kickstart {ks}: {exc}") from exc
    return KickstartText(text, ks, path.resolve().parent)
