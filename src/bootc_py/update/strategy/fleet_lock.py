"""The `fleet_lock` strategy: reboot only holding a slot of a FleetLock server's semaphore.

    [strategy]
    kind = "fleet_lock"
    [strategy.fleet_lock]
    base_url = "http://fleetlock.example:8080/"
    group = "workers"                 # default "default", as Zincati

With a `[strategy.periodic]` table as well, the maintenance window gates first and the lock is
asked for only inside it (Zincati cannot combine the two: its #1014), so a slot is never held
while waiting for a window.

Never reboot without the lock: `may_reboot` allows only after the server answered 200 to
`pre-reboot`. `report_steady` (agent start, after a boot) releases the slot, which also frees one
that a crash before the reboot left held.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from bootc_py.errors import ConfigError
from bootc_py.update.fleetlock import (
    DEFAULT_GROUP,
    Backoff,
    FleetLockClient,
    FleetLockError,
    machine_client_id,
    retry,
    validate_base_url,
    validate_group,
)
from bootc_py.update.strategy.base import RebootDecision
from bootc_py.update.strategy.periodic import Periodic, parse_periodic

if TYPE_CHECKING:
    from bootc_py.update.policy import PolicyConfig

log = logging.getLogger(__name__)
SECTION = "[strategy.fleet_lock]"
# How long report_steady keeps trying to release the slot before the agent goes on (the next
# agent run tries again; a held slot only delays others, it never lets two too many reboot).
STEADY_DEADLINE = 120.0


@dataclass(frozen=True)
class FleetLockConfig:
    base_url: str
    group: str = DEFAULT_GROUP


def parse_fleet_lock(table: Mapping[str, object]) -> FleetLockConfig:
    """Validate a `[strategy.fleet_lock]` table (ConfigError naming the bad key)."""
    unknown = set(table) - {"base_url", "group"}
    if unknown:
        raise ConfigError(f"{SECTION} {sorted(unknown)[0]}: unknown setting",
                          "fleet_lock takes base_url and group")
    base_url = table.get("base_url")
    if not isinstance(base_url, str) or not base_url:
        raise ConfigError(f"{SECTION} base_url: missing",
                          "set base_url to the FleetLock server, e.g. \"http://10.0.0.5:8080/\"")
    group = table.get("group", DEFAULT_GROUP)
    if not isinstance(group, str):
        raise ConfigError(f"{SECTION} group: {group!r} is not a string", "e.g. group = \"workers\"")
    try:
        return FleetLockConfig(validate_base_url(base_url), validate_group(group))
    except ConfigError as exc:
        raise ConfigError(f"{SECTION} {exc.message}", exc.hint) from exc


class FleetLock:
    """Strategy: a reboot needs the FleetLock slot; a steady host gives it back."""

    def __init__(self, client: FleetLockClient, *, backoff: Backoff = Backoff(),
                 steady_deadline: float = STEADY_DEADLINE,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None) -> None:
        self.client = client
        self.backoff = backoff
        self.steady_deadline = steady_deadline
        self.sleep = sleep
        self.clock = clock
        self._delays: Iterator[float] = backoff.delays(rng)

    @classmethod
    def from_config(cls, config: FleetLockConfig, root: Path = Path("/")) -> FleetLock:
        return cls(FleetLockClient(config.base_url, config.group, machine_client_id(root)))

    def report_steady(self) -> None:
        """Release this host's slot; retries with backoff, raises FleetLockError at the end."""
        retry(self.client.steady_state, backoff=self.backoff, deadline=self.steady_deadline,
              sleep=self.sleep, clock=self.clock)

    def may_reboot(self, now: datetime) -> RebootDecision:
        try:
            self.client.pre_reboot()
        except FleetLockError as exc:
            wait = timedelta(seconds=next(self._delays))
            return RebootDecision(False, f"no FleetLock slot in group '{self.client.group}': "
                                         f"{exc.kind}: {exc.value}", retry_after=wait)
        self._delays = self.backoff.delays()
        return RebootDecision(True, f"holding a FleetLock slot in group '{self.client.group}'")


class WindowThenLock:
    """periodic + fleet_lock: the window gates, then the lock (never held outside a window)."""

    def __init__(self, window: Periodic, lock: FleetLock) -> None:
        self.window = window
        self.lock = lock

    def report_steady(self) -> None:
        self.lock.report_steady()

    def may_reboot(self, now: datetime) -> RebootDecision:
        gate = self.window.may_reboot(now)
        if not gate.allowed:
            return gate
        held = self.lock.may_reboot(now)
        return RebootDecision(held.allowed, f"{gate.reason}; {held.reason}", held.retry_after)


def from_policy(policy: PolicyConfig, root: Path = Path("/")) -> FleetLock | WindowThenLock:
    """Factory for update/strategy's registry: `[strategy] kind = "fleet_lock"`; with a
    `[strategy.periodic]` table too, the window gates the lock."""
    lock = FleetLock.from_config(parse_fleet_lock(policy.section("fleet_lock").table), root)
    periodic = policy.section("periodic").table
    if periodic:
        return WindowThenLock(Periodic(parse_periodic(periodic)), lock)
    return lock
