"""Registry credentials from the containers auth files, and WWW-Authenticate challenges.

Lookup order follows containers/image (pkg/docker/config getAuthFilePaths): a file given with
--authfile (the updater passes bootc's /etc/ostree/auth.json so) or $REGISTRY_AUTH_FILE is the
only file read; otherwise the runtime file (${XDG_RUNTIME_DIR}/containers/auth.json,
/run/containers/$UID/auth.json), then ~/.config/containers/auth.json, then Docker's
~/.docker/config.json ($DOCKER_CONFIG). The first file that has an entry for the image wins; inside
a file the most specific key wins (`host/ns/repo` before `host/ns` before `host`).

Secrets never reach a log or a repr: Credentials hides its password.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bootc_py.errors import AuthError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)
    source: str = ""  # the file they came from, for messages

    def __str__(self) -> str:
        return f"user '{self.username}'" + (f" (from {self.source})" if self.source else "")


def auth_file_paths(authfile: Path | None = None) -> list[Path]:
    """The auth files to consult, in order."""
    paths: list[Path] = []
    user_file = authfile or (Path(os.environ["REGISTRY_AUTH_FILE"])
                             if os.environ.get("REGISTRY_AUTH_FILE") else None)
    if user_file is not None:
        return [user_file]  # user-specified: nothing else is consulted, not even Docker's
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        paths.append(Path(runtime) / "containers" / "auth.json")
    paths.append(Path(f"/run/containers/{os.geteuid()}/auth.json"))
    config_home = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    paths.append(Path(config_home) / "containers" / "auth.json")
    docker_dir = os.environ.get("DOCKER_CONFIG") or os.path.expanduser("~/.docker")
    paths.append(Path(docker_dir) / "config.json")
    return list(dict.fromkeys(paths))  # unique, in order


def _normalize_key(key: str) -> str:
    """Docker writes keys like "https://index.docker.io/v1/"; containers use "docker.io"."""
    key = re.sub(r"^https?://", "", key).rstrip("/")
    key = re.sub(r"/v[12]$", "", key)
    if key in ("index.docker.io", "registry-1.docker.io"):
        key = "docker.io"
    return key


def _decode(entry: dict[str, Any], path: Path, key: str) -> Credentials | None:
    if entry.get("auth"):
        try:
            user, sep, password = base64.b64decode(str(entry["auth"])).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
            raise AuthError(f"{path}: the 'auth' value for '{key}' is not base64 of user:password"
                            ) from exc
        if not sep:
            raise AuthError(f"{path}: the 'auth' value for '{key}' is not base64 of user:password")
        return Credentials(user, password, str(path))
    if entry.get("username"):
        return Credentials(str(entry["username"]), str(entry.get("password", "")), str(path))
    if entry.get("identitytoken"):
        log.warning("%s: identity tokens (for '%s') are not supported; trying anonymous access",
                    path, key)
    return None


def _read_auths(path: Path) -> dict[str, Any] | None:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise AuthError(f"cannot read auth file {path}: {exc}") from exc
    if not text.strip():
        return None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AuthError(f"auth file {path} is not valid JSON: {exc.msg} (line {exc.lineno})"
                        ) from exc
    if not isinstance(doc, dict):
        raise AuthError(f"auth file {path} is not a JSON object")
    if doc.get("credHelpers") or doc.get("credsStore"):
        log.debug("%s: credential helpers are not supported; using only its 'auths'", path)
    auths = doc.get("auths", {})
    if not isinstance(auths, dict):
        raise AuthError(f"auth file {path}: 'auths' is not an object")
    return {_normalize_key(k): v for k, v in auths.items() if isinstance(v, dict)}


def find_credentials(name: str, authfile: Path | None = None) -> Credentials | None:
    """Credentials for the image `name` ("HOST/REPO"), or None for anonymous access.

    An explicitly given authfile that does not exist is an error (a typo should not silently
    become an anonymous pull).
    """
    if authfile is not None and not authfile.is_file():
        raise AuthError(f"auth file {authfile} does not exist")
    parts = name.split("/")
    candidates = ["/".join(parts[:i]) for i in range(len(parts), 0, -1)]
    for path in auth_file_paths(authfile):
        auths = _read_auths(path)
        if not auths:
            continue
        for key in candidates:
            if key in auths:
                creds = _decode(auths[key], path, key)
                if creds is not None:
                    log.debug("using credentials for '%s' from %s", key, path)
                    return creds
    return None


@dataclass(frozen=True)
class Challenge:
    """A parsed WWW-Authenticate header: scheme ("basic" or "bearer") and its parameters."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict)


_PARAM_RE = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))\s*,?')


def parse_challenge(header: str) -> Challenge | None:
    """Parse `Bearer realm="...",service="...",scope="..."` or `Basic realm="..."`."""
    header = header.strip()
    if not header:
        return None
    scheme, _, rest = header.partition(" ")
    params: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        m = _PARAM_RE.match(rest, pos)
        if not m or m.end() == pos:
            break
        value = m.group(2) if m.group(2) is not None else m.group(3)
        params[m.group(1).lower()] = re.sub(r"\\(.)", r"\1", value)
        pos = m.end()
    return Challenge(scheme.lower(), params)
