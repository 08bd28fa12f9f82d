"""The `periodic` strategy: reboot into a staged update only inside weekly maintenance windows.

Zincati's settings, under `[updates.periodic]` of /etc/bootc-py/updates.toml:

    [updates]
    strategy = "periodic"
    [updates.periodic]
    time_zone = "Europe/Berlin"        # default "UTC"; "localtime" = /etc/localtime
    [[updates.periodic.window]]
    days = ["Sat", "Sun"]              # long or short English names
    start_time = "23:30"               # 24h, minute granularity, in time_zone
    length_minutes = 60

Windows are wall-clock times in `time_zone` (a window may run past midnight and past the end of
the week). Across a DST change a window keeps its wall-clock start; its length is elapsed time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bootc_py.errors import ConfigError
from bootc_py.update.strategy.base import RebootDecision

if TYPE_CHECKING:
    from bootc_py.update.policy import PolicyConfig

SECTION = "updates.periodic"
DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MAX_LENGTH = timedelta(days=7)
UTC_NAMES = ("UTC", "Etc/UTC")


@dataclass(frozen=True)
class Window:
    days: frozenset[int]  # 0 = Monday, as date.weekday()
    start: time
    length: timedelta

    def occurrences(self, tz: tzinfo, around: date, before: int = 8, after: int = 8
                    ) -> list[tuple[datetime, datetime]]:
        """(start, end) instants of this window on local dates around `around`."""
        spans = []
        for offset in range(-before, after + 1):
            day = around + timedelta(days=offset)
            if day.weekday() in self.days:
                begin = datetime.combine(day, self.start, tzinfo=tz).astimezone(UTC)
                spans.append((begin, begin + self.length))
        return spans


@dataclass(frozen=True)
class PeriodicConfig:
    windows: tuple[Window, ...]
    time_zone: str
    tz: tzinfo

    def current(self, now: datetime) -> tuple[datetime, datetime] | None:
        """The window in effect at `now` (UTC start, end), the one ending last if several."""
        local_day = now.astimezone(self.tz).date()
        active = [span for w in self.windows for span in w.occurrences(self.tz, local_day)
                  if span[0] <= now < span[1]]
        return max(active, key=lambda s: s[1]) if active else None

    def next_start(self, now: datetime) -> datetime:
        """The first window start after `now` (UTC)."""
        local_day = now.astimezone(self.tz).date()
        starts = [span[0] for w in self.windows for span in w.occurrences(self.tz, local_day)
                  if span[0] > now]
        return min(starts)

    def decide(self, now: datetime) -> RebootDecision:
        if now.tzinfo is None:
            raise ValueError("periodic strategy needs a timezone-aware time")
        span = self.current(now)
        if span is not None:
            local_end = span[1].astimezone(self.tz)
            return RebootDecision(True, f"inside the maintenance window until "
                                        f"{local_end:%a %H:%M} {self.time_zone}")
        start = self.next_start(now)
        return RebootDecision(False, f"waiting for the maintenance window at "
                                     f"{start.astimezone(self.tz):%a %Y-%m-%d %H:%M} "
                                     f"{self.time_zone}", retry_after=start - now)


def _err(key: str, problem: str, hint: str) -> ConfigError:
    return ConfigError(f"{SECTION}.{key}: {problem}", hint)


def _parse_day(value: object, where: str) -> int:
    text = value.strip().lower() if isinstance(value, str) else ""
    for index, name in enumerate(DAYS):
        if text and text in (name, name[:3]):
            return index
    raise _err(where, f"{value!r} is not a day of the week",
               "use English day names, long or short: 'Monday' or 'Mon'")


def _parse_time(value: object, where: str) -> time:
    if isinstance(value, str):
        hours, sep, minutes = value.strip().partition(":")
        if (sep and hours.isdigit() and minutes.isdigit() and len(minutes) == 2
                and int(hours) < 24 and int(minutes) < 60):
            return time(int(hours), int(minutes))
    raise _err(where, f"{value!r} is not a time of day", "write 24h time as \"HH:MM\", e.g. "
                                                         "\"22:30\"")


def _parse_window(raw: object, index: int) -> Window:
    where = f"window[{index}]"
    if not isinstance(raw, Mapping):
        raise _err(where, "is not a table", "write windows as [[updates.periodic.window]]")
    unknown = set(raw) - {"days", "start_time", "length_minutes"}
    if unknown:
        raise _err(f"{where}.{sorted(unknown)[0]}", "unknown setting",
                   "a window has days, start_time and length_minutes")
    days = raw.get("days")
    if not isinstance(days, Sequence) or isinstance(days, str) or not days:
        raise _err(f"{where}.days", "missing or not a list of days",
                   "e.g. days = [\"Sat\", \"Sun\"]")
    if "start_time" not in raw:
        raise _err(f"{where}.start_time", "missing", "e.g. start_time = \"22:30\"")
    length = raw.get("length_minutes")
    if isinstance(length, bool) or not isinstance(length, int) or length <= 0:
        raise _err(f"{where}.length_minutes", f"{length!r} is not a positive number of minutes",
                   "e.g. length_minutes = 60")
    if timedelta(minutes=length) > MAX_LENGTH:
        raise _err(f"{where}.length_minutes", f"{length} is longer than a week",
                   "a weekly window lasts at most 10080 minutes")
    return Window(days=frozenset(_parse_day(d, f"{where}.days") for d in days),
                  start=_parse_time(raw["start_time"], f"{where}.start_time"),
                  length=timedelta(minutes=length))


def load_zone(name: str, localtime: Path = Path("/etc/localtime")) -> tzinfo:
    if name == "localtime":
        try:
            with localtime.open("rb") as handle:
                return ZoneInfo.from_file(handle, key="localtime")
        except (OSError, ValueError) as exc:
            raise _err("time_zone", f"cannot read {localtime}: {exc}",
                       "set the host time zone (timedatectl) or name one here") from exc
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        if name in UTC_NAMES:  # a minimal image may have no tzdata: UTC needs none
            return UTC
        raise _err("time_zone", f"unknown time zone {name!r}",
                   "use an IANA name such as 'UTC' or 'America/Toronto'") from exc


def parse_periodic(table: Mapping[str, object]) -> PeriodicConfig:
    """Validate an `[updates.periodic]` table (ConfigError naming the bad key)."""
    unknown = set(table) - {"time_zone", "window"}
    if unknown:
        raise _err(sorted(unknown)[0], "unknown setting",
                   "periodic takes time_zone and [[updates.periodic.window]] tables")
    zone = table.get("time_zone", "UTC")
    if not isinstance(zone, str):
        raise _err("time_zone", f"{zone!r} is not a string", "e.g. time_zone = \"UTC\"")
    raw_windows = table.get("window")
    if not isinstance(raw_windows, Sequence) or isinstance(raw_windows, str) or not raw_windows:
        raise _err("window", "no maintenance window configured",
                   "add at least one [[updates.periodic.window]] with days, start_time and "
                   "length_minutes")
    windows = tuple(_parse_window(raw, i) for i, raw in enumerate(raw_windows))
    return PeriodicConfig(windows=windows, time_zone=zone, tz=load_zone(zone))


class Periodic:
    """Strategy: may reboot only while a window is open; nothing to report when steady."""

    def __init__(self, config: PeriodicConfig) -> None:
        self.config = config

    def report_steady(self) -> None:
        return None

    def may_reboot(self, now: datetime) -> RebootDecision:
        return self.config.decide(now)


def from_policy(policy: PolicyConfig) -> Periodic:
    """Factory for update/strategy's registry: `[updates] strategy = "periodic"`."""
    return Periodic(periodic_config(policy))


def periodic_config(policy: PolicyConfig) -> PeriodicConfig:
    section = policy.section("periodic")
    try:
        return parse_periodic(section.table)
    except ConfigError as exc:
        raise section.refused(exc) from exc
