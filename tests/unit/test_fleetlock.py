"""FleetLock client against the protocol-exact test server, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from bootc_py.errors import ConfigError
from bootc_py.update import fleetlock
from bootc_py.update.fleetlock import Backoff, FleetLockClient, FleetLockError
from fleetlock_server import FleetLockServer

# systemd's own answer, from
# `systemd-id128 machine-id --app-specific=6a1f0c3e9b7d4e28a5c2f4b1d8e07a93` for this
# machine id (the integration test re-checks it against the host's systemd-id128).
MACHINE_ID = "3d1219c7c4c5404aaa1f6d2a48adfda4"
SYSTEMD_ANSWER = "59873293542645e7a120a8861e68a62f"


@pytest.fixture
def server() -> Iterator[FleetLockServer]:
    with FleetLockServer(slots={"workers": 2}) as srv:
        yield srv


def client(srv: FleetLockServer, cid: str, group: str = "workers") -> FleetLockClient:
    return FleetLockClient(srv.base_url, group, cid, timeout=5)


def test_lock_sends_protocol_body_and_header(server: FleetLockServer) -> None:
    client(server, "node-a").pre_reboot()
    assert server.requests == [("/v1/pre-reboot",
                                {"client_params": {"id": "node-a", "group": "workers"}})]
    assert server.holders("workers") == {"node-a"}


def test_semaphore_full_is_a_fleetlock_error_with_kind(server: FleetLockServer) -> None:
    client(server, "a").pre_reboot()
    client(server, "b").pre_reboot()
    with pytest.raises(FleetLockError) as err:
        client(server, "c").pre_reboot()
    assert err.value.kind == "failed_lock_semaphore_full"
    assert err.value.status == 409
    assert "all slots are locked" in err.value.message
    assert server.holders("workers") == {"a", "b"}


def test_lock_is_recursive_and_unlock_releases_the_slot(server: FleetLockServer) -> None:
    a = client(server, "a")
    a.pre_reboot()
    a.pre_reboot()  # again: still one slot
    client(server, "b").pre_reboot()
    a.steady_state()
    a.steady_state()  # unlock if held: no error when not held
    client(server, "c").pre_reboot()
    assert server.holders("workers") == {"b", "c"}


def test_groups_are_separate_semaphores(server: FleetLockServer) -> None:
    client(server, "a", "workers").pre_reboot()
    client(server, "b", "workers").pre_reboot()
    client(server, "c", "default").pre_reboot()  # 1 slot in other groups, free
    with pytest.raises(FleetLockError):
        client(server, "d", "default").pre_reboot()


def test_non_json_error_body_still_names_the_status(server: FleetLockServer) -> None:
    server.fail_next(1, 503)
    with pytest.raises(FleetLockError) as err:
        client(server, "a").pre_reboot()
    assert err.value.kind == "http_503"
    assert "proxy error" in err.value.value


def test_unreachable_server_is_a_transport_error() -> None:
    with FleetLockServer() as srv:
        url = srv.base_url
    with pytest.raises(FleetLockError) as err:
        FleetLockClient(url, "default", "a", timeout=2).pre_reboot()
    assert err.value.kind == "transport"
    assert err.value.status is None


def test_base_url_with_path_prefix_is_joined(server: FleetLockServer) -> None:
    c = FleetLockClient(server.base_url + "base/", "workers", "a", timeout=5)
    with pytest.raises(FleetLockError) as err:
        c.pre_reboot()
    assert err.value.kind == "not_found"
    assert server.requests[-1][0] == "/base/v1/pre-reboot"


def test_lock_waits_with_backoff_until_a_slot_frees(server: FleetLockServer) -> None:
    server.hold("workers", "x")
    server.hold("workers", "y")
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 3:
            server.release("workers", "x")

    refused = client(server, "a").lock(backoff=Backoff(initial=1, cap=3, jitter=False),
                                       sleep=sleep)
    assert refused == 3
    assert waits == [1, 2, 3]
    assert server.holders("workers") == {"a", "y"}


def test_lock_gives_up_at_the_deadline(server: FleetLockServer) -> None:
    server.hold("workers", "x")
    server.hold("workers", "y")
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    with pytest.raises(FleetLockError):
        fleetlock.retry(client(server, "a").pre_reboot, backoff=Backoff(1, 8, jitter=False),
                        deadline=10, sleep=sleep, clock=lambda: now[0])
    assert now[0] == 7  # waited 1+2+4; the next 8 s wait would pass the deadline
    assert "a" not in server.holders("workers")


def test_jittered_backoff_stays_in_bounds_and_caps() -> None:
    delays = Backoff(initial=2, cap=10).delays(random.Random(1))
    got = [next(delays) for _ in range(6)]
    assert all(1 <= d <= 2 for d in got[:1])
    assert all(5 <= d <= 10 for d in got[3:])


def test_app_specific_id_is_systemds() -> None:
    got = fleetlock.app_specific_id(MACHINE_ID + "\n")
    assert got == SYSTEMD_ANSWER
    assert got[12] == "4" and got[16] in "89ab"  # v4 UUID
    assert fleetlock.app_specific_id(MACHINE_ID, bytes(16)) != got


def test_machine_client_id_reads_etc_machine_id(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/machine-id").write_text(MACHINE_ID + "\n")
    assert fleetlock.machine_client_id(tmp_path) == SYSTEMD_ANSWER
    (tmp_path / "etc/machine-id").write_text("uninitialized\n")
    with pytest.raises(ConfigError, match="invalid machine id 'uninitialized'"):
        fleetlock.machine_client_id(tmp_path)


@pytest.mark.parametrize("group", ["", "a b", "x/y", "ü"])
def test_bad_group_is_refused(group: str) -> None:
    with pytest.raises(ConfigError, match="invalid FleetLock group"):
        FleetLockClient("http://127.0.0.1:1/", group, "a")


def test_bad_base_url_is_refused() -> None:
    with pytest.raises(ConfigError, match="invalid FleetLock base_url"):
        FleetLockClient("127.0.0.1:8080", "default", "a")
