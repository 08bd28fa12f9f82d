"""fleet_lock strategy (alone and behind a maintenance window) against the test server."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bootc_py.errors import ConfigError
from bootc_py.update.fleetlock import Backoff, FleetLockClient, FleetLockError
from bootc_py.update.strategy.fleet_lock import (
    FleetLock,
    WindowThenLock,
    parse_fleet_lock,
)
from bootc_py.update.strategy.periodic import Periodic, parse_periodic
from fleetlock_server import FleetLockServer

NOW = datetime(2026, 12, 5, 22, 30, tzinfo=UTC)  # a Saturday


@pytest.fixture
def server() -> Iterator[FleetLockServer]:
    with FleetLockServer(slots={"workers": 1}) as srv:
        yield srv


def strategy(srv: FleetLockServer, cid: str = "me") -> FleetLock:
    client = FleetLockClient(srv.base_url, "workers", cid, timeout=5)
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    return FleetLock(client, backoff=Backoff(initial=4, cap=16, jitter=False),
                     steady_deadline=60, sleep=sleep, clock=lambda: now[0],
                     retry_backoff=Backoff(initial=4, cap=16, jitter=False))


def test_no_reboot_while_another_host_holds_the_slot(server: FleetLockServer) -> None:
    server.hold("workers", "other")
    s = strategy(server)
    first, second = s.may_reboot(NOW), s.may_reboot(NOW)
    assert not first.allowed and not second.allowed
    assert "failed_lock_semaphore_full" in first.reason
    assert (first.retry_after, second.retry_after) == (timedelta(seconds=4), timedelta(seconds=8))
    assert server.holders("workers") == {"other"}
    server.release("workers", "other")
    granted = s.may_reboot(NOW)
    assert granted.allowed
    assert server.holders("workers") == {"me"}


def test_refusals_in_a_row_outlive_the_process_and_reset_on_the_lock(
        server: FleetLockServer, tmp_path: Path) -> None:
    # Each agent run is a new process: without the count in /run every retry would come
    # after the first, shortest delay (a fleet polling its server every few seconds).
    count = tmp_path / "run/bootc-py/fleetlock-refusals"
    server.hold("workers", "other")

    def run() -> FleetLock:
        return FleetLock(FleetLockClient(server.base_url, "workers", "me", timeout=5),
                         refusals=count, retry_backoff=Backoff(initial=15, cap=60,
                                                               jitter=False))
    waits = [run().may_reboot(NOW).retry_after for _ in range(4)]
    assert waits == [timedelta(seconds=s) for s in (15, 30, 60, 60)]
    assert "refusal 5 in a row" in run().may_reboot(NOW).reason
    server.release("workers", "other")
    assert run().may_reboot(NOW).allowed
    assert not count.exists()
    server.hold("workers", "third")
    server.release("workers", "me")
    assert run().may_reboot(NOW).retry_after == timedelta(seconds=15)


def test_jittered_retry_delays_stay_in_their_step() -> None:
    backoff = Backoff(initial=15, cap=300)
    for attempt, step in [(0, 15), (1, 30), (4, 240), (5, 300), (40, 300)]:
        for _ in range(20):
            assert step / 2 <= backoff.nth(attempt) <= step


def test_report_steady_releases_the_slot(server: FleetLockServer) -> None:
    s = strategy(server)
    assert s.may_reboot(NOW).allowed
    s.report_steady()
    assert server.holders("workers") == set()
    assert strategy(server, "next").may_reboot(NOW).allowed


def test_report_steady_retries_then_gives_up(server: FleetLockServer) -> None:
    server.fail_next(2)
    strategy(server).report_steady()  # two 502s, then 200
    assert [p for p, _ in server.requests] == ["/v1/steady-state"] * 3
    server.requests.clear()
    server.fail_next(100)
    with pytest.raises(FleetLockError, match="http_502"):
        strategy(server).report_steady()
    assert len(server.requests) == 6  # waits 4+8+16+16+16 = 60 s; one more would pass 60


def test_server_down_means_no_reboot() -> None:
    with FleetLockServer() as srv:
        url = srv.base_url
    s = FleetLock(FleetLockClient(url, "default", "me", timeout=2))
    decision = s.may_reboot(NOW)
    assert not decision.allowed and "transport" in decision.reason


def window(start: str) -> Periodic:
    return Periodic(parse_periodic({"window": [{"days": ["Sat"], "start_time": start,
                                                "length_minutes": 60}]}))


def test_window_gates_before_the_lock(server: FleetLockServer) -> None:
    closed = WindowThenLock(window("10:00"), strategy(server))
    decision = closed.may_reboot(NOW)
    assert not decision.allowed and "maintenance window" in decision.reason
    assert server.requests == []  # the lock is not even asked for outside the window
    opened = WindowThenLock(window("22:00"), strategy(server))
    decision = opened.may_reboot(NOW)
    assert decision.allowed and "holding a FleetLock slot" in decision.reason
    assert server.holders("workers") == {"me"}
    opened.report_steady()
    assert server.holders("workers") == set()


def test_window_open_but_slot_taken(server: FleetLockServer) -> None:
    server.hold("workers", "other")
    decision = WindowThenLock(window("22:00"), strategy(server)).may_reboot(NOW)
    assert not decision.allowed and decision.retry_after == timedelta(seconds=4)


def test_parse_fleet_lock_settings() -> None:
    assert parse_fleet_lock({"base_url": "http://127.0.0.1:9/"}).group == "default"
    with pytest.raises(ConfigError, match=r"^updates\.fleet_lock\.base_url: missing"):
        parse_fleet_lock({"group": "x"})
    with pytest.raises(ConfigError, match=r"^updates\.fleet_lock: invalid FleetLock group"):
        parse_fleet_lock({"base_url": "http://h/", "group": "a b"})
    with pytest.raises(ConfigError, match="baseurl: unknown setting"):
        parse_fleet_lock({"baseurl": "http://h/"})


def test_from_policy_alone_and_with_a_window(tmp_path: Path) -> None:
    from bootc_py.update.policy import load_policy
    from bootc_py.update.strategy import StrategyKind, fleet_lock

    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/machine-id").write_text("3d1219c7c4c5404aaa1f6d2a48adfda4\n")
    admin = tmp_path / "updates.toml"
    admin.write_text('[updates]\nstrategy = "fleet_lock"\n[updates.fleet_lock]\n'
                     'base_url = "http://127.0.0.1:9/"\ngroup = "workers"\n'
                     '[updates.periodic]\n[[updates.periodic.window]]\ndays = ["Sat"]\n'
                     'start_time = "10:00"\nlength_minutes = 5\n')
    policy = load_policy(tmp_path / "none.toml", admin)
    assert policy.strategy is StrategyKind.FLEET_LOCK
    alone = fleet_lock.from_policy(policy, tmp_path)
    assert isinstance(alone, FleetLock)  # fleet_lock alone ignores [updates.periodic]
    assert alone.client.client_id == "59873293542645e7a120a8861e68a62f"
    assert alone.client.group == "workers"
    assert alone.refusals == tmp_path / "run/bootc-py/fleetlock-refusals"
    composed = fleet_lock.periodic_from_policy(policy, tmp_path)
    assert isinstance(composed, WindowThenLock)
    assert not composed.may_reboot(NOW).allowed  # outside the window: no request is made


def test_a_bad_fleet_lock_setting_names_the_file(tmp_path: Path) -> None:
    from bootc_py.update.policy import load_policy
    from bootc_py.update.strategy import make_strategy

    admin = tmp_path / "updates.toml"
    admin.write_text('[updates]\nstrategy = "fleet_lock"\n[updates.fleet_lock]\n'
                     'base_url = "fleetlock:8080"\n')
    with pytest.raises(ConfigError) as err:
        make_strategy(load_policy(tmp_path / "none.toml", admin))
    assert str(err.value).startswith(f"{admin}: updates.fleet_lock: invalid FleetLock "
                                     "base_url 'fleetlock:8080'")
