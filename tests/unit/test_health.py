"""Health checks in greenboot's layout: discovery, config, verdicts and their record.

Scripts are not run here (unit tests run no programs): a recording runner stands in for bash;
tests/integration/test_health_scripts.py runs real scripts.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bootc_py.errors import BootcPyError, ConfigError
from bootc_py.update import health
from bootc_py.update.health import CheckKind, GreenbootConf, Verdict

CSUM = "c" * 64
NOW = datetime(2026, 12, 1, 21, 0, tzinfo=UTC)


def script(root: Path, where: str, stage: str, name: str, body: str = "exit 0") -> Path:
    """A script where greenboot keeps it: .../greenboot/check/{required.d,wanted.d}, but
    .../greenboot/{green.d,red.d} (beside check/)."""
    prefix = "usr/lib/greenboot" if where == "usr" else "etc/greenboot"
    base = root / prefix / ("" if stage in ("green.d", "red.d") else "check") / stage
    base.mkdir(parents=True, exist_ok=True)
    path = base / name
    path.write_text(f"#!/bin/bash\n{body}\n")
    return path


class Runner:
    """Stands in for bash: a script fails when its body says `exit N` with N != 0."""

    def __init__(self) -> None:
        self.ran: list[Path] = []

    def __call__(self, path: Path, timeout: float) -> str | None:
        self.ran.append(path)
        body = path.read_text()
        return None if "exit 0" in body else "exit 1"


def test_etc_overrides_usr_by_name_and_order_is_by_name(tmp_path: Path) -> None:
    script(tmp_path, "usr", "required.d", "20-b.sh")
    script(tmp_path, "usr", "required.d", "10-a.sh", "exit 1")
    script(tmp_path, "etc", "required.d", "10-a.sh")  # the admin's fix wins
    script(tmp_path, "etc", "required.d", "15-c.sh")
    script(tmp_path, "usr", "required.d", "README")  # not a *.sh: ignored, as by greenboot
    got = health.scripts(tmp_path, "required.d")
    assert [(p.parent.parent.parent.name, p.name) for p in got] == [
        ("greenboot", "10-a.sh"), ("greenboot", "15-c.sh"), ("greenboot", "20-b.sh")]
    assert got[0].is_relative_to(tmp_path / "etc")
    assert got[2].is_relative_to(tmp_path / "usr")


def test_required_failure_is_red_wanted_failure_only_warns(tmp_path: Path) -> None:
    script(tmp_path, "usr", "wanted.d", "w.sh", "exit 1")
    conf = GreenbootConf(check_failed_units=False)
    green = health.decide(CSUM, health.run_checks(tmp_path, conf, runner=Runner()), NOW)
    assert green.verdict is Verdict.GREEN
    assert [w.name for w in green.warnings] == ["w.sh"]
    assert green.summary() == "green (1 checks, 1 warning(s)) at 2026-12-01T21:00:00+00:00"
    script(tmp_path, "usr", "required.d", "r.sh", "exit 1")
    red = health.decide(CSUM, health.run_checks(tmp_path, conf, runner=Runner()), NOW)
    assert red.verdict is Verdict.RED
    assert red.summary() == "red (failed: r.sh) at 2026-12-01T21:00:00+00:00"


def test_disabled_checks_do_not_run(tmp_path: Path) -> None:
    script(tmp_path, "usr", "required.d", "r.sh", "exit 1")
    runner = Runner()
    conf = GreenbootConf(disabled=frozenset({"r.sh", health.BUILTIN_UNITS}))
    results = health.run_checks(tmp_path, conf, runner=runner,
                                units=lambda: pytest.fail("disabled"))
    assert results == [] and runner.ran == []


def test_builtin_failed_units_check(tmp_path: Path) -> None:
    conf = GreenbootConf()
    bad = health.run_checks(tmp_path, conf, runner=Runner(), units=lambda: ["nginx.service"])
    assert [(r.name, r.kind, r.ok, r.detail) for r in bad] == [
        (health.BUILTIN_UNITS, CheckKind.REQUIRED, False, "failed units: nginx.service")]
    assert health.decide(CSUM, bad).verdict is Verdict.RED

    def broken() -> list[str]:
        raise BootcPyError("systemctl exploded")

    unknown = health.run_checks(tmp_path, conf, runner=Runner(), units=broken)
    assert not unknown[0].ok and "systemctl exploded" in unknown[0].detail
    off = GreenbootConf(check_failed_units=False)
    assert health.run_checks(tmp_path, off, runner=Runner(), units=lambda: ["x"]) == []


def test_green_d_or_red_d_follow_the_verdict(tmp_path: Path) -> None:
    script(tmp_path, "usr", "green.d", "g.sh")
    script(tmp_path, "etc", "red.d", "r.sh", "exit 1")
    runner = Runner()
    conf = GreenbootConf()
    assert health.run_followups(tmp_path, health.decide(CSUM, []), conf, runner) == []
    red = health.decide(CSUM, [health.CheckResult("x", CheckKind.REQUIRED, False, "exit 1", 0)])
    assert health.run_followups(tmp_path, red, conf, runner) == ["r.sh"]
    assert [p.name for p in runner.ran] == ["g.sh", "r.sh"]
    assert runner.ran[1] == tmp_path / "etc/greenboot/red.d/r.sh"  # greenboot's place


def test_greenboot_conf_parsing() -> None:
    conf = health.parse_greenboot_conf(
        "# greenboot.conf\nGREENBOOT_MAX_BOOT_ATTEMPTS=5\n"
        'DISABLED_HEALTHCHECKS=("01-a.sh" "02 b.sh")  # spaces in names\n'
        "BOOTC_PY_CHECK_FAILED_UNITS=false\nBOOTC_PY_CHECK_TIMEOUT=20\nOTHER=ignored\n")
    assert conf == GreenbootConf(5, frozenset({"01-a.sh", "02 b.sh"}), False, 20.0)
    assert health.parse_greenboot_conf("") == GreenbootConf()


@pytest.mark.parametrize(("text", "message"), [
    ("GREENBOOT_MAX_BOOT_ATTEMPTS=zero\n", "GREENBOOT_MAX_BOOT_ATTEMPTS='zero' is not"),
    ("BOOTC_PY_CHECK_FAILED_UNITS=maybe\n", "is not a boolean"),
    ("just words\n", "line 1: not VAR=value"),
    ('DISABLED_HEALTHCHECKS=("a.sh\n', "line 1: No closing quotation"),
])
def test_bad_greenboot_conf(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=r"greenboot\.conf") as err:
        health.parse_greenboot_conf(text)
    assert message in err.value.message


def test_verdict_is_recorded_and_read_back(tmp_path: Path) -> None:
    verdict = health.decide(CSUM, [health.CheckResult("a.sh", CheckKind.WANTED, False,
                                                      "timed out after 5s", 5.0)], NOW)
    path = health.record_verdict(verdict, tmp_path)
    assert path == tmp_path / "var/lib/bootc-py/health" / f"{CSUM}.json"
    assert json.loads(path.read_text())["verdict"] == "green"
    assert health.read_verdict(CSUM, tmp_path) == verdict
    assert health.read_verdict("d" * 64, tmp_path) is None
    path.write_text("{not json")
    assert health.read_verdict(CSUM, tmp_path) is None  # status still works
    with pytest.raises(BootcPyError, match="refusing to record"):
        health.record_verdict(health.decide("../../etc", []), tmp_path)


def test_booted_deployment_from_the_kernel_command_line(tmp_path: Path) -> None:
    deploy = tmp_path / "ostree/deploy/default/deploy" / f"{CSUM}.0"
    deploy.mkdir(parents=True)
    link = tmp_path / "ostree/boot.1/default/abc/0"
    link.parent.mkdir(parents=True)
    link.symlink_to(deploy)
    cmdline = "root=UUID=x rw ostree=/ostree/boot.1/default/abc/0 quiet"
    assert health.booted_deployment(tmp_path, cmdline) == CSUM
    with pytest.raises(BootcPyError, match="not booted from an ostree deployment"):
        health.booted_deployment(tmp_path, "root=/dev/sda1")


def test_healthcheck_red_on_an_uncounted_boot_does_not_reboot(tmp_path: Path) -> None:
    deploy = tmp_path / "ostree/deploy/default/deploy" / f"{CSUM}.0"
    deploy.mkdir(parents=True)
    (tmp_path / "ostree/boot.1/default/abc").mkdir(parents=True)
    (tmp_path / "ostree/boot.1/default/abc/0").symlink_to(deploy)
    script(tmp_path, "usr", "required.d", "r.sh", "exit 1")
    result = health.healthcheck(tmp_path, tmp_path / "boot",
                                cmdline="ostree=/ostree/boot.1/default/abc/0",
                                runner=Runner(), units=list)
    assert result.verdict.verdict is Verdict.RED and not result.reboot
    assert health.read_verdict(CSUM, tmp_path) == result.verdict


def test_bad_images_are_recorded_once_and_skipped(tmp_path: Path) -> None:
    assert not health.is_bad_digest("sha256:aa", tmp_path)
    assert not health.is_bad_digest(None, tmp_path)
    bad = health.BadImage("sha256:aa", "docker://127.0.0.1:5000/os:broken", CSUM,
                          "2026-12-01T21:00:00+00:00")
    health.record_bad_image(bad, tmp_path)
    health.record_bad_image(bad, tmp_path)
    health.record_bad_image(health.BadImage("sha256:bb", None, "d" * 64, "x"), tmp_path)
    assert [b.digest for b in health.read_bad_images(tmp_path)] == ["sha256:aa", "sha256:bb"]
    assert health.read_bad_images(tmp_path)[0] == bad
    assert health.is_bad_digest("sha256:aa", tmp_path)
    assert not health.is_bad_digest("sha256:cc", tmp_path)  # a newer digest is taken
    (tmp_path / health.BAD_IMAGES).write_text("[{]")
    assert health.read_bad_images(tmp_path) == []


def test_bad_image_record_says_what_happened_and_reads_old_records(tmp_path: Path) -> None:
    red = health.decide(CSUM, [health.CheckResult("10-x.sh", CheckKind.REQUIRED, False,
                                                  "exit 1: disk gone", 0.1)], NOW)
    assert health.fallback_reason(red) == \
        "red at 2026-12-01T21:00:00+00:00: 10-x.sh exit 1: disk gone"
    assert "never reached the health checks" in health.fallback_reason(None)
    bad = health.BadImage("sha256:aa", "docker://h/os:1", CSUM, "2026-12-01T21:00:00+00:00",
                          "d" * 64, health.fallback_reason(red))
    assert bad.describe() == ("docker://h/os:1 sha256:aa: fell back to dddddddddddd at "
                              "2026-12-01T21:00:00+00:00 (red at 2026-12-01T21:00:00+00:00: "
                              "10-x.sh exit 1: disk gone)")
    health.record_bad_image(bad, tmp_path)
    assert health.read_bad_images(tmp_path) == [bad]
    # A record written before fell_back_to/reason existed still reads.
    (tmp_path / health.BAD_IMAGES).write_text(json.dumps(
        [{"digest": "sha256:bb", "imgref": None, "deployment": CSUM, "recorded_at": "t"}]))
    assert health.read_bad_images(tmp_path) == [health.BadImage("sha256:bb", None, CSUM, "t")]


def test_automatic_updates_skip_a_recorded_digest_only(tmp_path: Path) -> None:
    skip = health.skip_reason(tmp_path)
    assert skip("sha256:aa") is None
    health.record_bad_image(health.BadImage("sha256:aa", None, CSUM, "2026-12-01T21:00Z"),
                            tmp_path)
    assert skip("sha256:aa") == "it fell back at 2026-12-01T21:00Z"
    assert skip("sha256:ab") is None  # a newer image is taken


def test_boot_attempts_are_bounded_by_the_bootloader_countdown(tmp_path: Path) -> None:
    assert health.boot_attempts(tmp_path) == 3  # greenboot's default
    (tmp_path / "etc/greenboot").mkdir(parents=True)
    (tmp_path / health.CONF).write_text("GREENBOOT_MAX_BOOT_ATTEMPTS=2\n")
    assert health.boot_attempts(tmp_path) == 2
    (tmp_path / health.CONF).write_text("GREENBOOT_MAX_BOOT_ATTEMPTS=12\n")
    with pytest.raises(ConfigError, match="not a number from 1 to 9"):
        health.boot_attempts(tmp_path)
