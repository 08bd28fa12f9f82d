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


@pytest.mark.parametrize(("defaults_text", "admin_text"), [
    (None, None),                                               # the image's defaults only
    (None, '[updates]\nstrategy = "immediate"\n'),
    (None, '[updates]\nstrategy = "periodic"\n# strategy = "fleet_lock"\n'),
    (None, '[updates]\nstrategy = "fleet_lock"\n' + FLEET),
    (None, '[updates]\n  strategy="periodic+fleet_lock"\n' + FLEET),
    (None, 'updates = { strategy = "fleet_lock", '
           'fleet_lock = { base_url = "http://127.0.0.1:1/" } }\n'),
    (None, 'enabled = true\n'),
    ('[updates]\nstrategy = "fleet_lock"\n' + FLEET, None),  # an image defaulting to fleet_lock
])
def test_the_unit_runs_the_agent_exactly_when_a_slot_can_be_held(
        tmp_path: Path, defaults_text: str | None, admin_text: str | None) -> None:
    defaults, admin = DEFAULTS, tmp_path / "admin.toml"   # None: the shipped file / no file
    if defaults_text is not None:
        defaults = tmp_path / "defaults.toml"
        defaults.write_text(defaults_text)
    if admin_text is not None:
        admin.write_text(admin_text)
    strategy = load_policy(defaults, admin).strategy
    rc = run_condition(defaults, admin)
    if strategy in HOLDS_A_SLOT:
        assert rc == 0, f"{strategy}: the steady-state report was skipped"
    else:
        # 1-254: systemd skips the unit without marking it failed.
        assert 1 <= rc <= 254, f"{strategy}: python would start for nothing (rc {rc})"
