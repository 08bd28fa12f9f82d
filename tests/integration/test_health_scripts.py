"""Real greenboot-style scripts under bash: exit codes, stderr, a hang is a failure."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bootc_py.errors import TimeoutExpired
from bootc_py.run import run
from bootc_py.update import health
from bootc_py.update.health import GreenbootConf, Verdict


def script(root: Path, stage: str, name: str, body: str, where: Path = health.USR_DIR) -> None:
    if stage in ("green.d", "red.d"):  # greenboot keeps these beside check/, not in it
        where = where.parent
    base = root / where / stage
    base.mkdir(parents=True, exist_ok=True)
    (base / name).write_text(f"#!/bin/bash\n{body}\n")  # no exec bit: greenboot runs bash


def test_real_scripts_decide_the_verdict(tmp_path: Path) -> None:
    script(tmp_path, "required.d", "10-ok.sh", "echo fine; exit 0")
    script(tmp_path, "wanted.d", "20-warn.sh", "echo 'disk 91% full' >&2; exit 3")
    script(tmp_path, "required.d", "30-hang.sh", "sleep 600 & sleep 600")
    conf = GreenbootConf(check_failed_units=False, script_timeout=2)
    start = time.monotonic()
    results = health.run_checks(tmp_path, conf)
    assert time.monotonic() - start < 20  # the hang was killed, with its background child
    by_name = {r.name: r for r in results}
    assert by_name["10-ok.sh"].ok
    assert by_name["20-warn.sh"].detail == "exit 3: disk 91% full"
    assert by_name["30-hang.sh"].detail == "timed out after 2s"
    verdict = health.decide("e" * 64, results)
    assert verdict.verdict is Verdict.RED
    assert [r.name for r in verdict.failed_required] == ["30-hang.sh"]


def test_red_d_runs_after_a_red_verdict(tmp_path: Path) -> None:
    marker = tmp_path / "red-ran"
    script(tmp_path, "required.d", "fail.sh", "exit 1")
    script(tmp_path, "red.d", "note.sh", f"touch {marker}", where=health.ETC_DIR)
    script(tmp_path, "green.d", "never.sh", f"touch {tmp_path / 'green-ran'}")
    conf = GreenbootConf(check_failed_units=False)
    verdict = health.decide("e" * 64, health.run_checks(tmp_path, conf))
    assert health.run_followups(tmp_path, verdict, conf) == []
    assert marker.exists() and not (tmp_path / "green-ran").exists()


def test_run_timeout_kills_the_whole_session() -> None:
    start = time.monotonic()
    with pytest.raises(TimeoutExpired, match="did not finish within 1 s"):
        run(["bash", "-c", "sleep 300 & sleep 300"], capture=True, timeout=1, own_session=True)
    assert time.monotonic() - start < 10
    assert run(["bash", "-c", "echo hi"], capture=True, timeout=5,
               own_session=True).stdout == "hi\n"

