"""Option parsing shared by command modules: sizes, booleans, pull options."""

from __future__ import annotations

import re
from pathlib import Path

import typer

from bootc_py.errors import UsageError
from bootc_py.image.cache import default_cache_dir
from bootc_py.image.source import PullOptions

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}

TLS_HELP = "Verify TLS for registries (--tls-verify=false allows plain http)."
CACHE_HELP = "Blob cache directory (default /var/lib/bootc-py/cache, env BOOTC_PY_CACHE_DIR)."
AUTHFILE_HELP = "Registry credentials file (containers auth.json format)."

# Options several commands share, declared once (typer reads them per command).
CACHE_DIR = typer.Option(None, "--cache-dir", help=CACHE_HELP)
TLS_VERIFY = typer.Option(None, "--tls-verify", metavar="BOOL", help=TLS_HELP)
AUTHFILE = typer.Option(None, "--authfile", help=AUTHFILE_HELP)
TARGET_IMGREF = typer.Option(None, "--target-imgref", metavar="IMGREF",
                             help="The image reference later updates come from "
                             "(default: the source).")
KARG = typer.Option(None, "--karg", metavar="KARG",
                    help="Extra kernel argument; repeat for more (repeated keys like console= "
                    "are all kept).")
ROOT_KEYS = typer.Option(None, "--root-ssh-authorized-keys", metavar="FILE",
                         help="Install these SSH public keys for root.")
BOOTLOADER = typer.Option("grub", "--bootloader", metavar="grub|systemd|none",
                          help="Bootloader to install (systemd-boot is UEFI-only; BIOS then "
                          "gets GRUB with --generic-image).")


def parse_size(text: str, what: str) -> int:
    """'10G', '512M', '10GiB', '1.5 GiB', '4096' (bytes) -> bytes; powers of 1024."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgtKMGT]?)(?:i?[bB])?\s*", text)
    if not match:
        raise UsageError(f"invalid {what} '{text}'", "use a size such as 512M, 10G or 10GiB")
    value = float(match.group(1)) * _UNITS[match.group(2).lower()]
    return int(value)


def parse_bool(text: str, what: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise UsageError(f"invalid value '{text}' for {what}", "use true or false")


def pull_options(cache_dir: Path | None, tls_verify: str | None, authfile: Path | None,
                 arch: str | None = None) -> PullOptions:
    cache = cache_dir or default_cache_dir()
    tls = None if tls_verify is None else parse_bool(tls_verify, "--tls-verify")
    if authfile is not None and not authfile.is_file():
        raise UsageError(f"auth file {authfile} does not exist")
    return PullOptions(cache_dir=cache, tls_verify=tls, authfile=authfile,
                       arch=arch or "amd64")
