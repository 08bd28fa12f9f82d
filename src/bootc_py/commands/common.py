"""Option parsing shared by command modules: sizes, booleans, pull options."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from bootc_py.errors import UsageError
from bootc_py.image.cache import DEFAULT_CACHE_DIR, default_cache_dir

if TYPE_CHECKING:  # the pull machinery (requests, urllib3) loads only when a command pulls
    from bootc_py.image.source import PullOptions

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}

# Options several commands share, declared once (typer reads them per command).
CACHE_DIR = typer.Option(None, "--cache-dir", metavar="DIR",
                         help="Blob cache directory (default: $BOOTC_PY_CACHE_DIR or "
                         f"{DEFAULT_CACHE_DIR}).")
TLS_VERIFY = typer.Option(None, "--tls-verify", metavar="BOOL",
                          help="Require HTTPS with a verified certificate (default: true, "
                          "unless registries.conf marks the registry insecure). "
                          "--tls-verify=false allows plain HTTP.")
AUTHFILE = typer.Option(None, "--authfile", metavar="FILE",
                        help="Credentials file (containers-auth.json format). Default: "
                        "$REGISTRY_AUTH_FILE, then the usual podman/docker locations.")
ARCH = typer.Option("amd64", "--arch",
                    help="Architecture to pick from a multi-arch image (amd64, arm64, ...).")
JOBS = typer.Option(4, "--jobs", "-j", help="Layers downloaded in parallel.")
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


def parse_bool(value: str | None, flag: str) -> bool | None:
    """skopeo/bootc spell booleans as --flag=true|false; None means "not given"."""
    if value is None or value == "":
        return None
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise UsageError(f"{flag} expects true or false, not '{value}'")


def pull_options(cache_dir: Path | None, tls_verify: str | None, authfile: Path | None,
                 arch: str = "amd64", jobs: int = 4) -> PullOptions:
    if jobs < 1:
        raise UsageError(f"--jobs must be at least 1, not {jobs}")
    if authfile is not None and not authfile.is_file():
        raise UsageError(f"auth file {authfile} does not exist")
    from bootc_py.image.source import PullOptions

    return PullOptions(cache_dir=cache_dir or default_cache_dir(),
                       tls_verify=parse_bool(tls_verify, "--tls-verify"), authfile=authfile,
                       arch=arch, jobs=jobs)
