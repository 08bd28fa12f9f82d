"""The default strategy: reboot as soon as an update is staged (bootc's own timer does that)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from bootc_py.update.strategy.base import RebootDecision

if TYPE_CHECKING:
    from bootc_py.update.policy import PolicyConfig


class Immediate:
    """No coordination: every moment is a good moment. Takes no settings."""

    def __init__(self, policy: PolicyConfig) -> None:
        # An [updates.immediate] table has nothing to set; a key there is a typo to report.
        section = policy.section("immediate")
        for key in section.table:
            raise section.error(key, "the immediate strategy takes no settings")

    def report_steady(self) -> None:
        return None

    def may_reboot(self, now: datetime) -> RebootDecision:
        return RebootDecision(True, "strategy 'immediate': reboot as soon as an update is staged")
