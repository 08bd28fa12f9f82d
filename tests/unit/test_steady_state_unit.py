"""bootc-py-steady-state.service starts python only when the policy can hold a FleetLock slot.

Its ExecCondition (a grep over the two policy files) must agree with update/policy.py: run
for fleet_lock and periodic+fleet_lock, skip for every other strategy, including the image's
own defaults file, whose comments name fleet_lock.
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from bootc_py.update.policy import ADMIN_FILE, DEFAULTS_FILE, load_policy
from bootc_py.update.strategy.base import StrategyKind

pytestmark = pytest.mark.host_tools  # runs the unit's own grep on temporary policy files

SRC = Path(__file__).resolve().parents[2] / "src/bootc_py"
UNIT = SRC / "data/systemd/bootc-py-steady-state.service"
DEFAULTS = SRC / "data/updates.toml"
FLEET = '[updates.fleet_lock]\nbase_url = "http://127.0.0.1:8080/"\n'
HOLDS_A_SLOT = {StrategyKind.FLEET_LOCK, StrategyKind.PERIODIC_FLEET_LOCK}


def exec_condition() -> list[str]:
    lines = [ln.split("=", 1)[1] for ln in UNIT.read_text().splitlines()
             if ln.startswith("ExecCondition=")]
    assert len(lines) == 1, "the steady-state unit needs exactly one ExecCondition"
    return shlex.split(lines[0])


def run_condition(defaults: Path, admin: Path) -> int:
    argv = [{str(DEFAULTS_FILE): str(defaults), str(ADMIN_FILE): str(admin)}.get(a, a)
            for a in exec_condition()]
    assert str(defaults) in argv and str(admin) in argv, argv  # both policy files are read
    return subprocess.run(argv, check=False).returncode


@pytest.mark.parametrize("admin_text", [
    None,                                                       # the image's defaults only
    '[updates]\nstrategy = "immediate"\n',
    '[updates]\nstrategy = "periodic"\n# strategy = "fleet_lock"\n',
    '[updates]\nstrategy = "fleet_lock"\n' + FLEET,
    '[updates]\n  strategy="periodic+fleet_lock"\n' + FLEET,
    'updates = { strategy = "fleet_lock", fleet_lock = { base_url = "http://127.0.0.1:1/" } }\n',
    'enabled = true\n',
])
def test_the_unit_runs_the_agent_exactly_when_a_slot_can_be_held(
        tmp_path: Path, admin_text: str | None) -> None:
    admin = tmp_path / "admin.toml"
    if admin_text is not None:
        admin.write_text(admin_text)
    strategy = load_policy(DEFAULTS, admin).strategy
    rc = run_condition(DEFAULTS, admin)
    if strategy in HOLDS_A_SLOT:
        assert rc == 0, f"{strategy}: the steady-state report was skipped"
    else:
        # 1-254: systemd skips the unit without marking it failed.
        assert 1 <= rc <= 254, f"{strategy}: python would start for nothing (rc {rc})"


def test_a_fleet_lock_default_in_the_image_runs_the_agent(tmp_path: Path) -> None:
    defaults = tmp_path / "defaults.toml"
    defaults.write_text('[updates]\nstrategy = "fleet_lock"\n' + FLEET)
    assert load_policy(defaults, tmp_path / "absent.toml").strategy is StrategyKind.FLEET_LOCK
    assert run_condition(defaults, tmp_path / "absent.toml") == 0
