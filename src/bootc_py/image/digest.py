"""Content digests ("sha256:<hex>"): validation and streaming hashers."""

from __future__ import annotations

import hashlib
import re
from typing import Any

# Algorithms the OCI image spec registers, with their hex length.
_HEX_LEN = {"sha256": 64, "sha512": 128}
_DIGEST_RE = re.compile(r"^(sha256|sha512):([a-f0-9]+)$")


def is_digest(text: str) -> bool:
    """True for a well-formed, supported digest ("sha256:" + 64 lowercase hex)."""
    m = _DIGEST_RE.match(text)
    return m is not None and len(m.group(2)) == _HEX_LEN[m.group(1)]


def split(digest: str) -> tuple[str, str]:
    """("sha256", "<hex>") of a digest already checked with is_digest()."""
    algo, _, hexpart = digest.partition(":")
    return algo, hexpart


def hasher(digest: str) -> Any:
    """A fresh hashlib object for the algorithm of `digest`."""
    return hashlib.new(split(digest)[0])


def of_bytes(data: bytes, algo: str = "sha256") -> str:
    return f"{algo}:{hashlib.new(algo, data).hexdigest()}"


def short(digest: str) -> str:
    """The human-sized form used in messages: "sha256:0123456789ab"."""
    algo, hexpart = split(digest)
    return f"{algo}:{hexpart[:12]}"
