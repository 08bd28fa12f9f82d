"""Update strategies: when the agent may reboot into a staged update.

The registry below is the one place a strategy is made from the policy: `[updates] strategy`
in the policy file names a StrategyKind, and its factory reads (and validates) its own
`[updates.<kind>]` table. Adding a strategy is a module plus one line here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from bootc_py.update.strategy import fleet_lock, periodic
from bootc_py.update.strategy.base import RebootDecision, Strategy, StrategyKind
from bootc_py.update.strategy.immediate import Immediate

if TYPE_CHECKING:
    from bootc_py.update.policy import PolicyConfig

__all__ = ["STRATEGIES", "RebootDecision", "Strategy", "StrategyKind", "make_strategy"]

STRATEGIES: dict[StrategyKind, Callable[[PolicyConfig], Strategy]] = {
    StrategyKind.IMMEDIATE: Immediate,
    StrategyKind.PERIODIC: periodic.from_policy,
    StrategyKind.FLEET_LOCK: fleet_lock.from_policy,
    StrategyKind.PERIODIC_FLEET_LOCK: fleet_lock.periodic_from_policy,
}


def make_strategy(policy: PolicyConfig) -> Strategy:
    """The strategy the policy names, built from its settings (ConfigError when they are bad)."""
    return STRATEGIES[policy.strategy](policy)
