"""The automatic-update policy: defaults, the admin's overrides, one-line errors naming the
file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from bootc_py.errors import ConfigError
from bootc_py.update.policy import ApplyMode, PolicyConfig, load_policy
from bootc_py.update.strategy import StrategyKind, make_strategy

PACKAGED = Path(__file__).resolve().parents[2] / "src/bootc_py/data/updates.toml"


def files(tmp_path: Path, defaults: str | None, admin: str | None) -> tuple[Path, Path]:
    d, a = tmp_path / "usr-lib-updates.toml", tmp_path / "etc-updates.toml"
    if defaults is not None:
        d.write_text(defaults)
    if admin is not None:
        a.write_text(admin)
    return d, a


def test_no_files_means_reboot_immediately(tmp_path: Path) -> None:
    policy = load_policy(*files(tmp_path, None, None))
    assert policy == PolicyConfig()
    assert (policy.enabled, policy.apply, policy.strategy) == (
        True, ApplyMode.REBOOT, StrategyKind.IMMEDIATE)


def test_packaged_defaults_are_the_built_in_ones(tmp_path: Path) -> None:
    policy = load_policy(PACKAGED, tmp_path / "absent.toml")
    assert (policy.enabled, policy.apply, policy.strategy) == (
        True, ApplyMode.REBOOT, StrategyKind.IMMEDIATE)
    assert policy.sources == (PACKAGED,)
    make_strategy(policy)  # the packaged file is valid for its strategy too


def test_admin_overrides_key_by_key(tmp_path: Path) -> None:
    d, a = files(tmp_path, 'enabled = true\napply = "reboot"\n', 'apply = "stage"\n')
    policy = load_policy(d, a)
    assert policy.enabled is True
    assert policy.apply is ApplyMode.STAGE
    assert policy.sources == (d, a)
    assert "apply=stage" in policy.describe()


def test_admin_disables(tmp_path: Path) -> None:
    assert load_policy(*files(tmp_path, None, "enabled = false\n")).enabled is False


def test_strategy_sections_merge_per_key_and_remember_their_file(tmp_path: Path) -> None:
    d, a = files(tmp_path, '[updates.immediate]\nx = 1\ny = "a"\n',
                 '[updates.immediate]\ny = "b"\n')
    section = load_policy(d, a).section("immediate")
    assert dict(section.table) == {"x": 1, "y": "b"}
    assert section.origins == {"x": d, "y": a}
    assert section.value("x", int, 0) == 1
    assert section.value("absent", str, "dflt") == "dflt"
    with pytest.raises(ConfigError, match=rf"^{a}: updates.immediate.y: must be an integer"):
        section.value("y", int, 0)
    with pytest.raises(ConfigError, match=r"updates.immediate.x: unknown setting"):
        section.refuse_unknown(["y"])


def test_a_strategy_validates_its_own_section(tmp_path: Path) -> None:
    d, a = files(tmp_path, None, '[updates]\nstrategy = "immediate"\n[updates.immediate]\n'
                                 'window = "Mon"\n')
    with pytest.raises(ConfigError) as err:
        make_strategy(load_policy(d, a))
    assert str(err.value) == (f"{a}: updates.immediate.window: the immediate strategy takes "
                              "no settings")


def test_bool_is_not_an_integer(tmp_path: Path) -> None:
    _, a = files(tmp_path, None, "[updates.immediate]\nn = true\n")
    with pytest.raises(ConfigError, match="must be an integer, got True"):
        load_policy(tmp_path / "none", a).section("immediate").value("n", int, 0)


@pytest.mark.parametrize(("admin", "message"), [
    ('apply = "restart"\n', "{a}: apply: 'restart' is not one of reboot, stage"),
    ('enabled = "yes"\n', "{a}: enabled: must be true or false, got 'yes'"),
    ("enable = true\n", "{a}: enable: unknown setting (known: enabled, apply, updates)"),
    ('updates = "immediate"\n', "{a}: updates: must be a table ([updates]), "
                                "got 'immediate'"),
    ('[updates]\nstrategy = "zincati"\n', "{a}: updates.strategy: 'zincati' is not one of "
                                          "immediate, periodic, fleet_lock, "
                                          "periodic+fleet_lock"),
    ('[updates]\nwindow = 3\n', "{a}: updates.window: unknown setting (only 'strategy' and "
                                 "[updates.<strategy>] tables go in [updates])"),
    ("[updates.fleetlok]\nurl = 'x'\n", "{a}: updates.fleetlok: unknown strategy settings "
                                         "(known: fleet_lock, immediate, periodic)"),
    ('[strategy]\nkind = "periodic"\n', "{a}: strategy: unknown setting (known: enabled, "
                                        "apply, updates)"),
    ("apply = \n", "{a}: not valid TOML: "),
])
def test_bad_values_name_the_file_and_the_key(tmp_path: Path, admin: str,
                                              message: str) -> None:
    d, a = files(tmp_path, 'apply = "reboot"\n', admin)
    with pytest.raises(ConfigError) as err:
        load_policy(d, a)
    text = str(err.value)
    assert text.startswith(message.format(a=a))
    assert "\n" not in text
    assert err.value.hint


def test_a_bad_default_names_the_defaults_file(tmp_path: Path) -> None:
    d, a = files(tmp_path, 'apply = "never"\n', "enabled = true\n")
    with pytest.raises(ConfigError, match=rf"^{d}: apply:"):
        load_policy(d, a)


def test_the_admin_fixes_a_bad_default(tmp_path: Path) -> None:
    d, a = files(tmp_path, 'apply = "never"\n', 'apply = "stage"\n')
    assert load_policy(d, a).apply is ApplyMode.STAGE


ZINCATI_PERIODIC = """[updates]
strategy = "periodic"
[updates.periodic]
time_zone = "America/Toronto"
[[updates.periodic.window]]
days = ["Sat", "Sun"]
start_time = "23:30"
length_minutes = 60
"""


def test_zincati_periodic_settings_make_the_periodic_strategy(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from bootc_py.update.strategy.periodic import Periodic

    d, a = files(tmp_path, None, ZINCATI_PERIODIC)
    policy = load_policy(d, a)
    assert policy.strategy is StrategyKind.PERIODIC
    strategy = make_strategy(policy)
    assert isinstance(strategy, Periodic)
    # Sat 23:45 in Toronto is Sun 04:45 UTC (EST, UTC-5).
    assert strategy.may_reboot(datetime(2026, 12, 6, 4, 45, tzinfo=UTC)).allowed
    assert not strategy.may_reboot(datetime(2026, 12, 5, 23, 45, tzinfo=UTC)).allowed


def test_the_image_picks_a_window_and_the_admin_moves_it(tmp_path: Path) -> None:
    d, a = files(tmp_path, ZINCATI_PERIODIC,
                 '[updates.periodic]\ntime_zone = "UTC"\n')
    section = load_policy(d, a).section("periodic")
    assert section.table["time_zone"] == "UTC"
    assert section.origins == {"time_zone": a, "window": d}


def test_a_bad_window_names_the_file_and_the_key(tmp_path: Path) -> None:
    d, a = files(tmp_path, None, ZINCATI_PERIODIC.replace('"23:30"', '"23.30"'))
    with pytest.raises(ConfigError) as err:
        make_strategy(load_policy(d, a))
    assert str(err.value).startswith(f"{a}: updates.periodic.window[0].start_time: '23.30' "
                                     "is not a time of day")
