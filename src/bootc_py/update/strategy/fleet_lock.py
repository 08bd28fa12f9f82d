"""The `fleet_lock` strategy: reboot only holding a slot of a FleetLock server's semaphore.

    [updates]
    strategy = "fleet_lock"           # or "periodic+fleet_lock", with [updates.periodic] too
    [updates.fleet_lock]
    base_url = "http://fleetlock.example:8080/"
    group = "workers"                 # default "default", as Zincati

`periodic+fleet_lock`: the maintenance window gates first and the lock is asked for only inside
it (Zincati cannot combine the two: its #1014), so a slot is never held while waiting for a
window.

Never reboot without the lock: `may_reboot` allows only after the server answered 200 to
`pre-reboot`. `report_steady` (after a green boot, and at agent start) releases the slot, which
also frees one that a crash before the reboot left held.

A refusal asks again after a jittered, growing delay; each agent run is a new process, so the
number of refusals in a row is kept in /run (a reboot starts the count again).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
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
from bootc_py.update.strategy.periodic import Periodic, periodic_config

if TYPE_CHECKING:
    from bootc_py.update.policy import PolicyConfig

log = logging.getLogger(__name__)
SECTION = "updates.fleet_lock"
# How long report_steady keeps trying to release the slot before the agent goes on (the next
# agent run tries again; a held slot only delays others, it never lets two too many reboot).
STEADY_DEADLINE = 120.0
# When to ask again after a refusal: 15 s, 30 s, ... up to 5 min (then every 2.5-5 min).
RETRY = Backoff(initial=15.0, cap=300.0)
REFUSALS = Path("/run/bootc-py/fleetlock-refusals")


@dataclass(frozen=True)
class FleetLockConfig:
    base_url: str
    group: str = DEFAULT_GROUP


def parse_fleet_lock(table: Mapping[str, object]) -> FleetLockConfig:
    """Validate an `[updates.fleet_lock]` table (ConfigError naming the bad key)."""
    unknown = set(table) - {"base_url", "group"}
    if unknown:
        raise ConfigError(f"{SECTION}.{sorted(unknown)[0]}: unknown setting",
                          "fleet_lock takes base_url and group")
    base_url = table.get("base_url")
    if not isinstance(base_url, str) or not base_url:
        raise ConfigError(f"{SECTION}.base_url: missing",
                          "set base_url to the FleetLock server, e.g. \"http://10.0.0.5:8080/\"")
    group = table.get("group", DEFAULT_GROUP)
    if not isinstance(group, str):
        raise ConfigError(f"{SECTION}.group: {group!r} is not a string", "e.g. group = \"workers\"")
    try:
        return FleetLockConfig(validate_base_url(base_url), validate_group(group))
    except ConfigError as exc:
        raise ConfigError(f"{SECTION}: {exc.message}", exc.hint) from exc


class FleetLock:
    """Strategy: a reboot needs the FleetLock slot; a steady host gives it back."""

    def __init__(self, client: FleetLockClient, *, backoff: Backoff = Backoff(),
                 steady_deadline: float = STEADY_DEADLINE,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None,
                 refusals: Path | None = None, retry_backoff: Backoff = RETRY) -> None:
        self.client = client
        self.backoff = backoff
        self.steady_deadline = steady_deadline
        self.sleep = sleep
        self.clock = clock
        self.rng = rng or random.Random()
        self.refusals = refusals
        self.retry_backoff = retry_backoff
        self._refused = 0   # refusals in a row when no file keeps the count

    @classmethod
    def from_config(cls, config: FleetLockConfig, root: Path = Path("/")) -> FleetLock:
        return cls(FleetLockClient(config.base_url, config.group, machine_client_id(root)),
                   refusals=root / REFUSALS.relative_to("/"))

    def report_steady(self) -> None:
        """Release this host's slot; retries with backoff, raises FleetLockError at the end."""
        retry(self.client.steady_state, backoff=self.backoff, deadline=self.steady_deadline,
              sleep=self.sleep, clock=self.clock)

    def may_reboot(self, now: datetime) -> RebootDecision:
        try:
            self.client.pre_reboot()
        except FleetLockError as exc:
            count = self._count()
            self._set_count(count + 1)
            wait = timedelta(seconds=self.retry_backoff.nth(count, self.rng))
            return RebootDecision(False, f"no FleetLock slot in group '{self.client.group}' "
                                         f"(refusal {count + 1} in a row): "
                                         f"{exc.kind}: {exc.value}", retry_after=wait)
        self._set_count(0)
        return RebootDecision(True, f"holding a FleetLock slot in group '{self.client.group}'")

    def _count(self) -> int:
        if self.refusals is None:
            return self._refused
        try:
            return max(0, int(self.refusals.read_text().strip() or 0))
        except (OSError, ValueError):
            return 0

    def _set_count(self, count: int) -> None:
        self._refused = count
        if self.refusals is None:
            return
        try:
            if count == 0:
                self.refusals.unlink(missing_ok=True)
            else:
                self.refusals.parent.mkdir(parents=True, exist_ok=True)
                self.refusals.write_text(f"{count}\n")
        except OSError as exc:  # only the retry delay depends on it
            log.warning("cannot keep the FleetLock refusal count in %s: %s", self.refusals, exc)


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


def fleet_lock_config(policy: PolicyConfig) -> FleetLockConfig:
    section = policy.section("fleet_lock")
    try:
        return parse_fleet_lock(section.table)
    except ConfigError as exc:
        raise section.refused(exc) from exc


def from_policy(policy: PolicyConfig, root: Path = Path("/")) -> FleetLock:
    """Factory for update/strategy's registry: `[updates] strategy = "fleet_lock"`."""
    return FleetLock.from_config(fleet_lock_config(policy), root)


def periodic_from_policy(policy: PolicyConfig, root: Path = Path("/")) -> WindowThenLock:
    """Factory for `[updates] strategy = "periodic+fleet_lock"`: the window gates the lock."""
    return WindowThenLock(Periodic(periodic_config(policy)),
                          FleetLock.from_config(fleet_lock_config(policy), root))
