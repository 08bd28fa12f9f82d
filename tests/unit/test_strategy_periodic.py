"""Maintenance-window arithmetic: across midnight, the end of the week, time zones and DST."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bootc_py.errors import ConfigError
from bootc_py.update.strategy.periodic import Periodic, parse_periodic


def cfg(*windows: dict[str, Any], tz: str = "UTC") -> Periodic:
    return Periodic(parse_periodic({"time_zone": tz, "window": list(windows)}))


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_inside_and_outside_a_simple_window() -> None:
    p = cfg({"days": ["Sat"], "start_time": "22:00", "length_minutes": 60})
    # 2026-12-05 is a Saturday.
    assert p.may_reboot(utc("2026-12-05T22:00")).allowed
    assert p.may_reboot(utc("2026-12-05T22:59")).allowed
    late = p.may_reboot(utc("2026-12-05T23:00"))
    assert not late.allowed
    assert late.retry_after == timedelta(days=7, hours=-1)
    early = p.may_reboot(utc("2026-12-05T21:30"))
    assert not early.allowed and early.retry_after == timedelta(minutes=30)
    assert "Sat 2026-12-05 22:00 UTC" in early.reason


def test_window_across_midnight_belongs_to_its_start_day() -> None:
    p = cfg({"days": ["Friday"], "start_time": "23:30", "length_minutes": 90})
    assert p.may_reboot(utc("2026-12-04T23:45")).allowed       # Fri
    assert p.may_reboot(utc("2026-12-05T00:59")).allowed       # Sat, still Friday's window
    assert not p.may_reboot(utc("2026-12-05T01:00")).allowed
    assert not p.may_reboot(utc("2026-12-05T23:45")).allowed   # Sat night: not a Friday


def test_window_across_the_end_of_the_week() -> None:
    p = cfg({"days": ["sun"], "start_time": "23:00", "length_minutes": 120})
    assert p.may_reboot(utc("2026-12-07T00:30")).allowed       # Monday 00:30
    assert not p.may_reboot(utc("2026-12-07T01:00")).allowed
    assert p.may_reboot(utc("2026-12-07T01:00")).retry_after == timedelta(days=6, hours=22)


def test_time_zone_shifts_the_window() -> None:
    # 02:00 in Tokyo (UTC+9) on Saturday is 17:00 UTC on Friday.
    p = cfg({"days": ["Sat"], "start_time": "02:00", "length_minutes": 30}, tz="Asia/Tokyo")
    assert p.may_reboot(utc("2026-12-04T17:10")).allowed
    assert not p.may_reboot(utc("2026-12-05T02:10")).allowed
    assert "Asia/Tokyo" in p.may_reboot(utc("2026-12-05T02:10")).reason


def test_dst_change_keeps_the_wall_clock_start() -> None:
    # Europe/Berlin: CET (UTC+1) until Sun 2027-03-28 01:00 UTC, then CEST (UTC+2).
    p = cfg({"days": ["Sat", "Sun"], "start_time": "04:00", "length_minutes": 60},
            tz="Europe/Berlin")
    assert p.may_reboot(utc("2027-03-27T03:30")).allowed       # Sat 04:30 CET
    assert p.may_reboot(utc("2027-03-28T02:30")).allowed       # Sun 04:30 CEST
    assert not p.may_reboot(utc("2027-03-28T03:30")).allowed
    before = p.may_reboot(utc("2027-03-27T06:00"))
    assert before.retry_after == timedelta(hours=20)            # to Sun 02:00 UTC


def test_several_windows_merge_into_one_calendar() -> None:
    p = cfg({"days": ["Mon"], "start_time": "10:00", "length_minutes": 10},
            {"days": ["Mon"], "start_time": "10:05", "length_minutes": 30})
    assert p.may_reboot(utc("2026-11-30T10:20")).allowed
    assert "until Mon 10:35" in p.may_reboot(utc("2026-11-30T10:07")).reason


def test_naive_time_is_refused() -> None:
    p = cfg({"days": ["Mon"], "start_time": "10:00", "length_minutes": 10})
    with pytest.raises(ValueError):
        p.may_reboot(datetime(2026, 11, 30, 10, 5))


def test_localtime_reads_etc_localtime(tmp_path: Path) -> None:
    zone = Path("/usr/share/zoneinfo/America/Toronto").read_bytes()
    from bootc_py.update.strategy import periodic

    (tmp_path / "localtime").write_bytes(zone)
    tz = periodic.load_zone("localtime", tmp_path / "localtime")
    assert datetime(2026, 7, 1, tzinfo=tz).utcoffset() == timedelta(hours=-4)


@pytest.mark.parametrize(("table", "message"), [
    ({}, "window: no maintenance window configured"),
    ({"window": [{"days": ["Sat"], "start_time": "22:00"}]},
     "window[0].length_minutes: None is not a positive"),
    ({"window": [{"days": ["Caturday"], "start_time": "22:00", "length_minutes": 5}]},
     "window[0].days: 'Caturday' is not a day"),
    ({"window": [{"days": ["Sat"], "start_time": "25:00", "length_minutes": 5}]},
     "window[0].start_time: '25:00' is not a time"),
    ({"window": [{"days": ["Sat"], "start_time": "22:00", "length_minutes": 20000}]},
     "longer than a week"),
    ({"window": [{"days": "Sat", "start_time": "22:00", "length_minutes": 5}]},
     "window[0].days: missing or not a list"),
    ({"time_zone": "Mars/Olympus", "window": [{"days": ["Sat"], "start_time": "1:00",
                                                "length_minutes": 5}]},
     "unknown time zone 'Mars/Olympus'"),
    ({"windows": []}, "windows: unknown setting"),
])
def test_bad_settings_name_the_key(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=r"^updates\.periodic\.") as err:
        parse_periodic(table)
    assert message in err.value.message
    assert err.value.hint


def test_utc_needs_no_tzdata(monkeypatch: pytest.MonkeyPatch) -> None:
    # A minimal image without tzdata: the default zone must still work; others are refused.
    from zoneinfo import ZoneInfoNotFoundError

    from bootc_py.update.strategy import periodic

    def missing(name: str) -> None:
        raise ZoneInfoNotFoundError(f"No time zone found with key {name}")
    monkeypatch.setattr(periodic, "ZoneInfo", missing)
    config = parse_periodic({"window": [{"days": ["Sat"], "start_time": "22:00",
                                         "length_minutes": 60}]})
    assert Periodic(config).may_reboot(datetime(2026, 12, 5, 22, 30, tzinfo=UTC)).allowed
    with pytest.raises(ConfigError, match="unknown time zone 'Europe/Berlin'"):
        parse_periodic({"time_zone": "Europe/Berlin", "window": [
            {"days": ["Sat"], "start_time": "22:00", "length_minutes": 60}]})
