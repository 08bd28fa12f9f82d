"""The parts of containers-registries.conf(5) a pull needs: insecure, blocked and relocated
registries, and mirrors (a fleet's pull-through cache).

Read from $CONTAINERS_REGISTRIES_CONF or /etc/containers/registries.conf, then the drop-ins in
/etc/containers/registries.conf.d/*.conf in name order (a later [[registry]] with the same prefix
replaces an earlier one). Both the v2 (`[[registry]]`) and the v1 (`[registries.insecure]`)
formats are understood. Short-name aliases are not used.

Mirrors as containers/image uses them: a `[[registry.mirror]]` list is tried in order before
the registry's own location, each with its own `insecure`; `mirror-by-digest-only` (of the
registry) or a mirror's `pull-from-mirror = "digest-only" | "tag-only"` limit a mirror to
references by digest or by tag. The first source that serves the manifest serves the image.
"""

from __future__ import annotations

import logging
import os
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bootc_py.errors import ConfigError

log = logging.getLogger(__name__)

SYSTEM_CONF = Path("/etc/containers/registries.conf")
SYSTEM_DROPIN = Path("/etc/containers/registries.conf.d")


PULL_FROM_MIRROR = ("all", "digest-only", "tag-only")


@dataclass(frozen=True)
class Mirror:
    location: str
    insecure: bool = False
    pull_from_mirror: str = "all"


@dataclass(frozen=True)
class PullSource:
    """Where to try to pull an image: the name there ("HOST[:PORT]/REPO") and its TLS."""

    name: str
    insecure: bool
    mirror: bool


@dataclass(frozen=True)
class RegistryEntry:
    """One [[registry]] table: `prefix` matches image names, `location` is where to pull."""

    prefix: str
    location: str
    insecure: bool = False
    blocked: bool = False
    mirrors: tuple[Mirror, ...] = ()
    mirror_by_digest_only: bool = False


@dataclass(frozen=True)
class RegistriesConf:
    entries: tuple[RegistryEntry, ...] = ()

    def lookup(self, name: str) -> RegistryEntry | None:
        """The entry whose prefix best matches `name` ("HOST[:PORT]/REPO"), longest first."""
        best: RegistryEntry | None = None
        best_len = -1
        for e in self.entries:
            n = _match_len(e.prefix, name)
            if n > best_len:
                best, best_len = e, n
        return best

    def rewrite(self, name: str) -> str:
        """`name` with its matched prefix replaced by the entry's location."""
        e = self.lookup(name)
        if e is None or e.prefix.startswith("*.") or e.location == e.prefix:
            return name
        return e.location + name[len(e.prefix):]

    def pull_sources(self, name: str, by_digest: bool) -> tuple[PullSource, ...]:
        """Where to pull `name` from, in order: the mirrors that apply, then the registry."""
        e = self.lookup(name)
        primary = PullSource(self.rewrite(name), e.insecure if e else False, mirror=False)
        if e is None:
            return (primary,)
        rest = name[len(e.prefix):] if not e.prefix.startswith("*.") else \
            name[len(name.split("/", 1)[0]):]
        out = []
        for m in e.mirrors:
            allowed = m.pull_from_mirror
            if e.mirror_by_digest_only:
                allowed = "digest-only"
            if (allowed == "digest-only" and not by_digest) or \
                    (allowed == "tag-only" and by_digest):
                continue
            out.append(PullSource(m.location + rest, m.insecure, mirror=True))
        return (*out, primary)


def _match_len(prefix: str, name: str) -> int:
    """Length of the match of `prefix` against `name`, or -1 when it does not match."""
    if prefix.startswith("*."):
        host = name.split("/", 1)[0].split(":", 1)[0]
        return len(prefix) if host.endswith(prefix[1:]) else -1
    if name == prefix or (name.startswith(prefix) and name[len(prefix)] in "/:@"):
        return len(prefix)
    return -1


def _entries_v2(doc: dict[str, Any], path: Path) -> list[RegistryEntry]:
    out = []
    for i, reg in enumerate(doc.get("registry", [])):
        if not isinstance(reg, dict):
            raise ConfigError(f"{path}: [[registry]] #{i + 1} is not a table")
        location = str(reg.get("location", "")).rstrip("/")
        prefix = str(reg.get("prefix", "") or location).rstrip("/")
        if not prefix:
            raise ConfigError(f"{path}: [[registry]] #{i + 1} has neither location nor prefix")
        mirrors = []
        for j, m in enumerate(reg.get("mirror", []) or []):
            where = f"{path}: [[registry.mirror]] #{j + 1} of {prefix}"
            if not isinstance(m, dict) or not str(m.get("location", "")).strip():
                raise ConfigError(f"{where} has no location")
            pull_from = str(m.get("pull-from-mirror", "") or "all")
            if pull_from not in PULL_FROM_MIRROR:
                raise ConfigError(f"{where}: pull-from-mirror is '{pull_from}'",
                                  "use one of: " + ", ".join(PULL_FROM_MIRROR))
            mirrors.append(Mirror(str(m["location"]).rstrip("/"), bool(m.get("insecure", False)),
                                  pull_from))
        out.append(RegistryEntry(prefix, location or prefix, bool(reg.get("insecure", False)),
                                 bool(reg.get("blocked", False)), tuple(mirrors),
                                 bool(reg.get("mirror-by-digest-only", False))))
    return out


def _entries_v1(doc: dict[str, Any]) -> list[RegistryEntry]:
    regs = doc.get("registries", {})
    out = []
    if isinstance(regs, dict):
        for kind in ("insecure", "block"):
            for host in (regs.get(kind) or {}).get("registries", []):
                host = str(host).rstrip("/")
                out.append(RegistryEntry(host, host, insecure=kind == "insecure",
                                         blocked=kind == "block"))
    return out


def _read(path: Path) -> list[RegistryEntry]:
    try:
        doc = tomllib.loads(path.read_text())
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    return _entries_v2(doc, path) + _entries_v1(doc)


def load(main: Path | None = None, dropin: Path | None = None,
         extra_dropins: Sequence[Path] = ()) -> RegistriesConf:
    """Load the registries configuration from the standard places (or the given ones), then
    the drop-ins of `extra_dropins` (e.g. an offline sysroot's own), which win."""
    if main is None:
        env = os.environ.get("CONTAINERS_REGISTRIES_CONF")
        main = Path(env) if env else SYSTEM_CONF
    if dropin is None:
        dropin = SYSTEM_DROPIN if main == SYSTEM_CONF else main.parent / (main.name + ".d")
    merged: dict[str, RegistryEntry] = {}
    files = [main, *sorted(dropin.glob("*.conf"))] if dropin.is_dir() else [main]
    for extra in extra_dropins:
        if extra.is_dir() and extra != dropin:
            files += sorted(extra.glob("*.conf"))
    for f in files:
        for e in _read(f):
            merged[e.prefix] = e
    if merged:
        log.debug("registries.conf: %d registry entries from %s", len(merged),
                  ", ".join(str(f) for f in files))
    return RegistriesConf(tuple(merged.values()))
