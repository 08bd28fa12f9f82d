"""The automatic-update policy: /etc/bootc-py/updates.toml over /usr/lib/bootc-py/updates.toml.

    enabled = true            # false: the timer runs and says it is disabled
    apply = "reboot"          # or "stage": stage only, applied at the next reboot anyone makes
    [updates]
    strategy = "immediate"    # a StrategyKind (Zincati's names); its settings in
    [updates.<strategy>]      # [updates.<strategy>], read and validated by its module
    ...

The image's defaults file is read first, the admin's file second; the admin's keys win one
by one (inside an [updates.<strategy>] table too). Every value remembers the file it came from,
so a bad one is reported as `FILE: KEY: what is wrong`.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from bootc_py.errors import ConfigError
from bootc_py.update.strategy.base import SETTINGS, StrategyKind

DEFAULTS_FILE = Path("/usr/lib/bootc-py/updates.toml")
ADMIN_FILE = Path("/etc/bootc-py/updates.toml")
TOP_KEYS = ("enabled", "apply", "updates")

T = TypeVar("T")
_TYPE_NAMES: dict[type, str] = {bool: "true or false", int: "an integer", float: "a number",
                                str: "a string", list: "a list", dict: "a table"}


class ApplyMode(StrEnum):
    REBOOT = "reboot"     # stage, then reboot when the strategy allows
    STAGE = "stage"       # stage only; the next reboot anyone makes applies it


@dataclass(frozen=True)
class StrategySection:
    """One `[updates.<kind>]` table, with the file each of its keys came from."""

    kind: str
    table: Mapping[str, Any] = field(default_factory=dict)
    origins: Mapping[str, Path] = field(default_factory=dict)

    def name(self, key: str) -> str:
        return f"updates.{self.kind}.{key}"

    @property
    def where(self) -> str:
        """The file(s) this table's settings come from."""
        files = dict.fromkeys(str(p) for p in self.origins.values())
        return " + ".join(files) or str(ADMIN_FILE)

    def refused(self, exc: ConfigError) -> ConfigError:
        """A strategy module's ConfigError with this table's file in front."""
        return ConfigError(f"{self.where}: {exc.message}", exc.hint)

    def error(self, key: str, message: str) -> ConfigError:
        """`FILE: updates.KIND.KEY: message` for a value a strategy refuses."""
        where = self.origins.get(key, ADMIN_FILE)
        return ConfigError(f"{where}: {self.name(key)}: {message}",
                           f"fix or remove '{key}' in [updates.{self.kind}] of {where}")

    def value(self, key: str, kind: type[T], default: T) -> T:
        """The key's value if it has type `kind` (default when absent), else ConfigError."""
        if key not in self.table:
            return default
        v = self.table[key]
        if kind is float and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        if not isinstance(v, kind) or (kind is not bool and isinstance(v, bool)):
            raise self.error(key, f"must be {_TYPE_NAMES.get(kind, kind.__name__)}, "
                                  f"got {v!r}")
        return v

    def refuse_unknown(self, known: Iterable[str]) -> None:
        """ConfigError for the first key that is not one of `known` (a typo, usually)."""
        allowed = set(known)
        for key in self.table:
            if key not in allowed:
                raise self.error(key, "unknown setting (known: "
                                      + (", ".join(sorted(allowed)) or "none") + ")")


@dataclass(frozen=True)
class PolicyConfig:
    enabled: bool = True
    apply: ApplyMode = ApplyMode.REBOOT
    strategy: StrategyKind = StrategyKind.IMMEDIATE
    sections: Mapping[str, StrategySection] = field(default_factory=dict)
    sources: tuple[Path, ...] = ()          # the files read, in order

    def section(self, kind: str) -> StrategySection:
        """The `[updates.<kind>]` table (empty when the files have none)."""
        return self.sections.get(kind) or StrategySection(kind)

    def describe(self) -> str:
        files = ", ".join(map(str, self.sources)) or "built-in defaults"
        return (f"enabled={str(self.enabled).lower()} apply={self.apply.value} "
                f"strategy={self.strategy.value} (from {files})")


def _read(path: Path) -> dict[str, Any] | None:
    try:
        text = path.read_bytes().decode()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the update policy: {exc}") from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}",
                          "see /usr/lib/bootc-py/updates.toml for the format") from exc


@dataclass
class _Merged:
    values: dict[str, tuple[Any, Path]] = field(default_factory=dict)
    sections: dict[str, dict[str, tuple[Any, Path]]] = field(default_factory=dict)
    section_files: dict[str, Path] = field(default_factory=dict)

    def add(self, doc: Mapping[str, Any], path: Path) -> None:
        for key, value in doc.items():
            if key not in TOP_KEYS:
                raise ConfigError(f"{path}: {key}: unknown setting (known: "
                                  + ", ".join(TOP_KEYS) + ")",
                                  f"remove '{key}' from {path}")
            if key != "updates":
                self.values[key] = (value, path)
                continue
            if not isinstance(value, dict):
                raise ConfigError(f"{path}: updates: must be a table ([updates]), "
                                  f"got {value!r}", f"write [updates] strategy = ... in {path}")
            for skey, svalue in value.items():
                if skey == "strategy":
                    self.values["updates.strategy"] = (svalue, path)
                elif isinstance(svalue, dict):
                    section = self.sections.setdefault(skey, {})
                    self.section_files.setdefault(skey, path)
                    section.update({k: (v, path) for k, v in svalue.items()})
                else:
                    raise ConfigError(f"{path}: updates.{skey}: unknown setting (only "
                                      "'strategy' and [updates.<strategy>] tables go in "
                                      "[updates])",
                                      f"move '{skey}' into the [updates.<strategy>] table it "
                                      f"belongs to in {path}")


def _choice(merged: _Merged, key: str, enum: type[StrEnum], default: StrEnum) -> Any:
    if key not in merged.values:
        return default
    value, path = merged.values[key]
    names = [m.value for m in enum]
    if not isinstance(value, str) or value not in names:
        raise ConfigError(f"{path}: {key}: {value!r} is not one of " + ", ".join(names),
                          f"set {key} = \"{names[0]}\" in {path}")
    return enum(value)


def parse_policy(docs: Iterable[tuple[Path, Mapping[str, Any]]]) -> PolicyConfig:
    """Merge parsed policy documents (lowest precedence first) into a PolicyConfig. Pure."""
    merged = _Merged()
    sources = []
    for path, doc in docs:
        merged.add(doc, path)
        sources.append(path)
    enabled = True
    if "enabled" in merged.values:
        value, path = merged.values["enabled"]
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: enabled: must be true or false, got {value!r}",
                              f"set enabled = true or enabled = false in {path}")
        enabled = value
    tables = sorted({name for names in SETTINGS.values() for name in names})
    for kind, path in merged.section_files.items():
        if kind not in tables:
            raise ConfigError(f"{path}: updates.{kind}: unknown strategy settings (known: "
                              + ", ".join(tables) + ")",
                              f"rename or remove [updates.{kind}] in {path}")
    sections = {kind: StrategySection(kind, {k: v for k, (v, _) in table.items()},
                                      {k: p for k, (_, p) in table.items()})
                for kind, table in merged.sections.items()}
    return PolicyConfig(
        enabled=enabled,
        apply=_choice(merged, "apply", ApplyMode, ApplyMode.REBOOT),
        strategy=_choice(merged, "updates.strategy", StrategyKind, StrategyKind.IMMEDIATE),
        sections=sections,
        sources=tuple(sources))


def load_policy(defaults: Path = DEFAULTS_FILE, admin: Path = ADMIN_FILE) -> PolicyConfig:
    """Read the image's defaults, then the admin's file; either may be missing."""
    docs = []
    for path in (defaults, admin):
        doc = _read(path)
        if doc is not None:
            docs.append((path, doc))
    return parse_policy(docs)
