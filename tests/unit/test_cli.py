from __future__ import annotations

import pytest

from bootc_py import __version__
from bootc_py.cli import main


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--version"])
    assert capsys.readouterr().out.strip() == f"bootc-py {__version__}"


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == 2
    assert "frobnicate" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "named"), [
    (["status", "--json"], "status"),
    (["-vv", "upgrade", "--check"], "upgrade"),
    (["--progress-fd", "3", "install", "to-disk"], "install"),
    (["--progress-fd=3", "internals", "healthcheck"], "internals"),
    (["--help"], None), ([], None), (["frobnicate"], None), (["-v"], None),
])
def test_the_command_a_line_names(argv: list[str], named: str | None) -> None:
    from bootc_py.cli import command_named

    assert command_named(argv) == named


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    from bootc_py.cli import COMMANDS

    main(["--help"])
    out = capsys.readouterr().out
    for name, cmd in COMMANDS.items():
        assert (f"  {name} " in out) is not cmd.hidden, name


def test_a_subcommand_runs_with_only_its_own_command_loaded(
        capsys: pytest.CaptureFixture[str]) -> None:
    main(["internals", "--help"])
    out = capsys.readouterr().out
    assert "bootloader-sync" in out and "healthcheck" in out
