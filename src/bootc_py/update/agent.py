"""The automatic updater: what bootc-py-fetch-apply-updates.service runs.

    policy disabled?      -> say so, do nothing
    this boot green?      -> strategy.report_steady() (a FleetLock slot a crash left held is
                             released; a red boot keeps its slot: the host is not steady)
    fetch + stage         -> the upgrade verb's library function (only missing layers are pulled)
    nothing staged        -> up to date
    apply = "stage"       -> leave it staged (the next reboot anyone makes applies it)
    strategy.may_reboot() -> reboot now, or leave it staged (and ask again later)

The decision is a pure function of the policy, what staging left and the strategy's answer
(`decide`, giving a frozen AgentPlan); `run_agent` does the effects, each one injected, so the
logic is tested without a host and the same code runs on one.

`report_steady_state` is the other entry point, run by bootc-py-steady-state.service once
boot-complete.target is reached (the health check passed): it releases the slot at once, not at
the agent's next run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path

from bootc_py.errors import BootcPyError
from bootc_py.run import run
from bootc_py.update.policy import ApplyMode, PolicyConfig
from bootc_py.update.strategy import RebootDecision, Strategy, make_strategy

log = logging.getLogger(__name__)

SERVICE = "bootc-py-fetch-apply-updates.service"
RETRY_UNIT = "bootc-py-fetch-apply-updates-retry"


class AgentAction(StrEnum):
    DISABLED = "disabled"           # the policy turned automatic updates off
    UP_TO_DATE = "up-to-date"       # nothing new, nothing staged
    LEAVE_STAGED = "leave-staged"   # staged; applied at the next reboot (or a later run)
    REBOOT = "reboot"               # reboot into the staged deployment now


@dataclass(frozen=True)
class StageOutcome:
    """What fetching and staging left behind.

    `staged`: a deployment is staged now (made by this run or by an earlier one);
    `changed`: this run staged a new one; `image`/`digest`: what is staged (or booted);
    `message`: the upgrade's own one-line account.
    """

    staged: bool
    changed: bool
    image: str | None = None
    digest: str | None = None
    message: str = ""


@dataclass(frozen=True)
class AgentPlan:
    action: AgentAction
    reason: str
    retry_after: timedelta | None = None    # ask the strategy again after this long

    def describe(self) -> str:
        text = f"{self.action.value}: {self.reason}"
        if self.retry_after is not None:
            text += f" (asking again in {_human(self.retry_after)})"
        return text


def _human(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def needs_strategy(policy: PolicyConfig, outcome: StageOutcome) -> bool:
    """Whether the strategy must be asked: only for a staged update that may reboot."""
    return policy.enabled and outcome.staged and policy.apply is ApplyMode.REBOOT


def decide(policy: PolicyConfig, outcome: StageOutcome | None,
           reboot: RebootDecision | None) -> AgentPlan:
    """The agent's decision. Pure. `outcome` is None when nothing was fetched (disabled);
    `reboot` is the strategy's answer, given exactly when `needs_strategy` says so."""
    if not policy.enabled:
        return AgentPlan(AgentAction.DISABLED,
                         "automatic updates are disabled (enabled = false in the policy)")
    if outcome is None:
        raise ValueError("an enabled policy needs the outcome of staging")
    if not outcome.staged:
        return AgentPlan(AgentAction.UP_TO_DATE, outcome.message or "no update available")
    what = outcome.image or "the update"
    if outcome.digest:
        what += f" ({outcome.digest})"
    verb = "staged" if outcome.changed else "already staged"
    if policy.apply is ApplyMode.STAGE:
        return AgentPlan(AgentAction.LEAVE_STAGED,
                         f"{what} {verb}; apply = \"stage\": it boots at the next reboot")
    if reboot is None:
        raise ValueError("a staged update with apply = reboot needs the strategy's decision")
    if reboot.allowed:
        return AgentPlan(AgentAction.REBOOT, f"{what} {verb}; {reboot.reason}")
    return AgentPlan(AgentAction.LEAVE_STAGED, f"{what} {verb}; not rebooting: {reboot.reason}",
                     reboot.retry_after)


@dataclass(frozen=True)
class AgentEffects:
    """What the agent does to the world, one callable each (the CLI passes the real ones)."""

    stage: Callable[[], StageOutcome]
    reboot: Callable[[], None]
    schedule_retry: Callable[[timedelta], None]
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    # Is this boot green (health check passed)? And the verdict's one-line account.
    boot_health: Callable[[], tuple[bool, str]] = lambda: (True, "no health check")


def report_steady_if_green(strategy: Strategy, effects: AgentEffects) -> bool:
    """Tell the strategy the host is steady, if this boot's health check passed. A failure to
    reach the FleetLock server is logged, not fatal: the slot is released at a later run."""
    green, why = effects.boot_health()
    if not green:
        log.warning("bootc-py update agent: not reporting steady state: %s", why)
        return False
    try:
        strategy.report_steady()
    except BootcPyError as exc:
        log.warning("bootc-py update agent: steady state not reported: %s", exc.message)
        return False
    log.info("bootc-py update agent: steady state reported (%s)", why)
    return True


def report_steady_state(policy: PolicyConfig, effects: AgentEffects,
                        strategy_factory: Callable[[PolicyConfig], Strategy] = make_strategy
                        ) -> bool:
    """After a green boot: release what the strategy holds (a FleetLock slot). Nothing else."""
    if not policy.enabled:
        return False
    return report_steady_if_green(strategy_factory(policy), effects)


def run_agent(policy: PolicyConfig, effects: AgentEffects,
              strategy_factory: Callable[[PolicyConfig], Strategy] = make_strategy
              ) -> AgentPlan:
    """One run: decide, then do what the plan says. Returns the plan carried out."""
    log.info("bootc-py update agent: policy %s", policy.describe())
    if not policy.enabled:
        plan = decide(policy, None, None)
        log.info("bootc-py update agent: %s", plan.describe())
        return plan
    strategy = strategy_factory(policy)     # a bad strategy setting fails before any fetch
    report_steady_if_green(strategy, effects)
    outcome = effects.stage()
    answer = strategy.may_reboot(effects.now()) if needs_strategy(policy, outcome) else None
    plan = decide(policy, outcome, answer)
    log.info("bootc-py update agent: %s", plan.describe())
    if plan.action is AgentAction.REBOOT:
        effects.reboot()
    elif plan.retry_after is not None:
        effects.schedule_retry(plan.retry_after)
    return plan


def stage_with_upgrade(sysroot: Path, quiet: bool = True) -> StageOutcome:
    """Fetch and stage through the upgrade verb (`bootc-py upgrade --quiet`, no reboot:
    rebooting is the agent's decision)."""
    from bootc_py.update.health import guarded_upgrade

    result = guarded_upgrade(sysroot, quiet)  # skips (and drops) images that fell back
    return StageOutcome(staged=result.staged, changed=result.deployed, image=result.imgref,
                        digest=result.new_digest, message=result.message)


def host_effects(sysroot: Path, quiet: bool = True) -> AgentEffects:
    """The real effects on a booted host."""
    from bootc_py.update import host

    return AgentEffects(stage=lambda: stage_with_upgrade(sysroot, quiet),
                        reboot=host.reboot, schedule_retry=systemd_retry,
                        boot_health=lambda: boot_health(sysroot))


def boot_health(root: Path = Path("/"), cmdline: str | None = None) -> tuple[bool, str]:
    """Whether the booted deployment's recorded health verdict (update/health.py, written by
    bootc-py-healthcheck.service before boot-complete.target) is green."""
    from bootc_py.update import health

    try:
        verdict = health.read_verdict(health.booted_deployment(root, cmdline), root)
    except BootcPyError as exc:
        return False, exc.message
    if verdict is None:
        return False, "no health verdict recorded for the booted deployment yet"
    return verdict.verdict is health.Verdict.GREEN, f"health check {verdict.summary()}"


def systemd_retry(after: timedelta) -> None:
    """Run the update service again after `after` (a transient timer), not only at the next
    tick of the 8-hour timer: a strategy that said "not now" named when to ask again."""
    seconds = max(1, int(after.total_seconds()))
    # One name per retry: a fired transient timer can stay loaded for a while (seen in a
    # guest: "Unit ...-retry.timer was already loaded" on the second retry of a boot, even
    # with RemainAfterElapse=no), so reusing one name dropped every later retry. A retry
    # still pending is stopped first: the newest plan is the one that counts.
    run(["systemctl", "stop", f"{RETRY_UNIT}-*.timer"], check=False, capture=True)
    unit = f"{RETRY_UNIT}-{time.time_ns() // 1000}"
    res = run(["systemd-run", f"--unit={unit}", f"--on-active={seconds}s",
               "--timer-property=AccuracySec=1s", "--timer-property=RemainAfterElapse=no",
               "--collect",
               "systemctl", "start", "--no-block", SERVICE], check=False, capture=True)
    if res.returncode != 0:
        # Usually: a retry is already scheduled. The regular timer runs the agent anyway.
        log.warning("cannot schedule a retry of %s: %s", SERVICE,
                    (res.stderr.strip().splitlines() or ["?"])[-1])
