"""What an update strategy is: the agent asks it when a staged update may reboot the host.

A strategy is one small module (immediate.py, periodic.py, fleet_lock.py) that turns its
`[updates.<kind>]` table of the policy file into an object with two methods. The agent calls
`report_steady()` after a green boot and at its start (a FleetLock strategy releases its reboot
slot here) and `may_reboot(now)` once an update is staged.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol


class StrategyKind(StrEnum):
    """`[updates] strategy = ...` in the policy file (Zincati's names)."""

    IMMEDIATE = "immediate"
    PERIODIC = "periodic"
    FLEET_LOCK = "fleet_lock"
    # Both: the window gates, then the lock (Zincati cannot combine them: its #1014).
    PERIODIC_FLEET_LOCK = "periodic+fleet_lock"


# The `[updates.<name>]` settings tables each strategy reads.
SETTINGS: dict[StrategyKind, tuple[str, ...]] = {
    StrategyKind.IMMEDIATE: ("immediate",),
    StrategyKind.PERIODIC: ("periodic",),
    StrategyKind.FLEET_LOCK: ("fleet_lock",),
    StrategyKind.PERIODIC_FLEET_LOCK: ("periodic", "fleet_lock"),
}


@dataclass(frozen=True)
class RebootDecision:
    """May the host reboot into its staged update now? If not, why, and when to ask again
    (None: at the next run of the timer)."""

    allowed: bool
    reason: str
    retry_after: timedelta | None = None


class Strategy(Protocol):
    def report_steady(self) -> None:
        """The host is up and running its booted deployment (called at every agent start)."""

    def may_reboot(self, now: datetime) -> RebootDecision:
        """Whether the agent may reboot into a staged update at `now` (timezone-aware)."""
