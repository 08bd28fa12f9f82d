"""The update agent's decisions (pure) and the order of its effects."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bootc_py.errors import ConfigError
from bootc_py.update.agent import (
    AgentAction,
    AgentEffects,
    AgentPlan,
    StageOutcome,
    decide,
    needs_strategy,
    report_steady_state,
    run_agent,
)
from bootc_py.update.fleetlock import FleetLockError
from bootc_py.update.policy import ApplyMode, PolicyConfig, StrategySection
from bootc_py.update.strategy import RebootDecision
from bootc_py.update.strategy.immediate import Immediate

NOW = datetime(2026, 12, 1, 21, 0, tzinfo=UTC)
NEW = StageOutcome(staged=True, changed=True, image="10.0.2.100:5000/sample:stable",
                   digest="sha256:2222", message="staged")
OLD = StageOutcome(staged=True, changed=False, image="10.0.2.100:5000/sample:stable",
                   digest="sha256:2222", message="no changes")
NONE = StageOutcome(staged=False, changed=False, message="no update: sha256:1111 is latest")
YES = RebootDecision(True, "go")
NOT_NOW = RebootDecision(False, "outside the maintenance window", timedelta(hours=3))


def test_disabled_fetches_nothing() -> None:
    plan = decide(PolicyConfig(enabled=False), None, None)
    assert plan.action is AgentAction.DISABLED
    assert "disabled" in plan.reason


def test_nothing_new_is_up_to_date_and_says_why() -> None:
    assert not needs_strategy(PolicyConfig(), NONE)
    assert decide(PolicyConfig(), NONE, None) == AgentPlan(AgentAction.UP_TO_DATE, NONE.message)


def test_staged_reboots_when_the_strategy_allows() -> None:
    assert needs_strategy(PolicyConfig(), NEW)
    plan = decide(PolicyConfig(), NEW, YES)
    assert plan.action is AgentAction.REBOOT
    assert plan.reason == "10.0.2.100:5000/sample:stable (sha256:2222) staged; go"


def test_an_update_staged_by_an_earlier_run_still_reboots() -> None:
    # e.g. the strategy said "not now" last time: this run finds it staged already.
    plan = decide(PolicyConfig(), OLD, YES)
    assert plan.action is AgentAction.REBOOT
    assert "already staged" in plan.reason


def test_stage_mode_never_asks_the_strategy_and_never_reboots() -> None:
    policy = PolicyConfig(apply=ApplyMode.STAGE)
    assert not needs_strategy(policy, NEW)
    plan = decide(policy, NEW, None)
    assert plan.action is AgentAction.LEAVE_STAGED
    assert 'apply = "stage"' in plan.reason and plan.retry_after is None


def test_a_refusal_leaves_it_staged_and_asks_again_later() -> None:
    plan = decide(PolicyConfig(), NEW, NOT_NOW)
    assert plan.action is AgentAction.LEAVE_STAGED
    assert plan.retry_after == timedelta(hours=3)
    assert plan.describe().endswith("not rebooting: outside the maintenance window "
                                    "(asking again in 3h00m)")


def test_missing_inputs_are_programming_errors() -> None:
    with pytest.raises(ValueError):
        decide(PolicyConfig(), None, None)
    with pytest.raises(ValueError):
        decide(PolicyConfig(), NEW, None)


def test_immediate_always_allows() -> None:
    strategy = Immediate(PolicyConfig())
    strategy.report_steady()
    assert strategy.may_reboot(NOW).allowed


@dataclass
class Recorder:
    """Effects that record what the agent did instead of doing it (a unit test may not
    reboot the machine it runs on)."""

    outcome: StageOutcome
    calls: list[str] = field(default_factory=list)
    health: tuple[bool, str] = (True, "health check green")

    def effects(self) -> AgentEffects:
        return AgentEffects(stage=self.stage, reboot=lambda: self.calls.append("reboot"),
                            schedule_retry=lambda d: self.calls.append(f"retry {d}"),
                            now=lambda: NOW, boot_health=lambda: self.health)

    def stage(self) -> StageOutcome:
        self.calls.append("stage")
        return self.outcome


@dataclass
class ScriptedStrategy:
    answer: RebootDecision
    calls: list[str]
    unreachable: bool = False

    def report_steady(self) -> None:
        self.calls.append("steady")
        if self.unreachable:
            raise FleetLockError("steady-state", "transport", "connection refused")

    def may_reboot(self, now: datetime) -> RebootDecision:
        self.calls.append(f"may_reboot {now:%H:%M}")
        return self.answer


def run(policy: PolicyConfig, outcome: StageOutcome,
        answer: RebootDecision = YES) -> tuple[AgentPlan, list[str]]:
    rec = Recorder(outcome)
    plan = run_agent(policy, rec.effects(), lambda _p: ScriptedStrategy(answer, rec.calls))
    return plan, rec.calls


def test_run_order_steady_stage_ask_reboot() -> None:
    plan, calls = run(PolicyConfig(), NEW)
    assert plan.action is AgentAction.REBOOT
    assert calls == ["steady", "stage", "may_reboot 21:00", "reboot"]


def test_run_disabled_touches_nothing() -> None:
    plan, calls = run(PolicyConfig(enabled=False), NEW)
    assert plan.action is AgentAction.DISABLED and calls == []


def test_run_stage_mode_does_not_reboot() -> None:
    plan, calls = run(PolicyConfig(apply=ApplyMode.STAGE), NEW)
    assert plan.action is AgentAction.LEAVE_STAGED
    assert calls == ["steady", "stage"]


def test_run_up_to_date_does_not_ask_the_strategy() -> None:
    # A FleetLock strategy takes a reboot slot when asked: never ask without a reason.
    _, calls = run(PolicyConfig(), NONE)
    assert calls == ["steady", "stage"]


def test_run_refused_schedules_a_retry() -> None:
    plan, calls = run(PolicyConfig(), NEW, NOT_NOW)
    assert plan.action is AgentAction.LEAVE_STAGED
    assert calls == ["steady", "stage", "may_reboot 21:00", "retry 3:00:00"]


def test_a_bad_strategy_setting_fails_before_any_fetch() -> None:
    section = StrategySection("immediate", {"typo": 1})
    rec = Recorder(NEW)
    with pytest.raises(ConfigError, match=r"updates\.immediate\.typo"):
        run_agent(PolicyConfig(sections={"immediate": section}), rec.effects())
    assert rec.calls == []


def test_a_red_boot_keeps_its_slot_but_still_stages() -> None:
    rec = Recorder(NEW, health=(False, "health check red (failed: sshd.sh)"))
    plan = run_agent(PolicyConfig(), rec.effects(), lambda _p: ScriptedStrategy(YES, rec.calls))
    assert rec.calls == ["stage", "may_reboot 21:00", "reboot"]
    assert plan.action is AgentAction.REBOOT


def test_an_unreachable_lock_server_at_start_does_not_stop_the_run() -> None:
    rec = Recorder(NEW)
    plan = run_agent(PolicyConfig(), rec.effects(),
                     lambda _p: ScriptedStrategy(NOT_NOW, rec.calls, unreachable=True))
    assert rec.calls == ["steady", "stage", "may_reboot 21:00", "retry 3:00:00"]
    assert plan.action is AgentAction.LEAVE_STAGED


def test_steady_state_entry_point_only_reports_and_only_when_green() -> None:
    rec = Recorder(NEW)
    assert report_steady_state(PolicyConfig(), rec.effects(),
                               lambda _p: ScriptedStrategy(YES, rec.calls))
    assert rec.calls == ["steady"]  # no fetch, no question, no reboot
    red = Recorder(NEW, health=(False, "no health verdict recorded"))
    assert not report_steady_state(PolicyConfig(), red.effects(),
                                   lambda _p: ScriptedStrategy(YES, red.calls))
    assert red.calls == []
    assert not report_steady_state(PolicyConfig(enabled=False), rec.effects())


def test_boot_health_reads_the_booted_deployments_verdict(tmp_path: Path) -> None:
    from bootc_py.update import health
    from bootc_py.update.agent import boot_health

    csum = "ab" * 32
    (tmp_path / "ostree/deploy/default/deploy" / f"{csum}.0").mkdir(parents=True)
    (tmp_path / "ostree/boot.1/default/x").mkdir(parents=True)
    (tmp_path / "ostree/boot.1/default/x/0").symlink_to(
        tmp_path / "ostree/deploy/default/deploy" / f"{csum}.0")
    cmdline = "root=UUID=1 ostree=/ostree/boot.1/default/x/0 rw"
    assert boot_health(tmp_path, cmdline) == (
        False, "no health verdict recorded for the booted deployment yet")
    for verdict, green in ((health.Verdict.RED, False), (health.Verdict.GREEN, True)):
        health.record_verdict(health.HealthVerdict(csum, verdict, "2026-12-02T04:00:00Z"),
                              tmp_path)
        ok, why = boot_health(tmp_path, cmdline)
        assert ok is green and why.startswith(f"health check {verdict.value}")
    assert boot_health(tmp_path, "root=UUID=1")[0] is False  # not booted from ostree


def test_retry_timer_unloads_after_it_fired(monkeypatch: pytest.MonkeyPatch) -> None:
    # With systemd's default (RemainAfterElapse=yes) the elapsed transient timer keeps its
    # name loaded, and every later retry of the same boot failed to be scheduled.
    from types import SimpleNamespace

    from bootc_py.update import agent

    calls: list[list[str]] = []

    def fake_run(argv: list[str], **_kw: object) -> SimpleNamespace:
        calls.append(argv)
        return SimpleNamespace(returncode=0, stderr="")
    monkeypatch.setattr(agent, "run", fake_run)
    agent.systemd_retry(timedelta(seconds=7.9))
    agent.systemd_retry(timedelta(seconds=7.9))
    assert calls[0] == ["systemctl", "stop", f"{agent.RETRY_UNIT}-*.timer"]
    argv = calls[1]
    assert argv[0] == "systemd-run" and argv[2] == "--on-active=7s"
    assert argv[1].startswith(f"--unit={agent.RETRY_UNIT}-")
    assert calls[3][1] != argv[1]            # every retry its own name
    assert "--timer-property=RemainAfterElapse=no" in argv
    assert argv[-4:] == ["systemctl", "start", "--no-block", agent.SERVICE]
