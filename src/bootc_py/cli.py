"""Command line entry point.

Thin by design: each command module under `commands/` parses options into config objects and
calls library code. This module is the only place that turns a BootcPyError into an exit code
and a one-line message.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import click
import typer

from bootc_py import __version__, log, signals
from bootc_py.errors import BootcPyError

HELP = (
    "Make bootable container images boot.\n\n"
    "Install an image onto a disk (install to-disk), turn it into VM disks or installer\n"
    "media (build), and keep an installed host up to date from its registry."
)


@dataclass(frozen=True)
class Command:
    """A top-level command: `attr` of bootc_py.commands.`module`, a function or (`group`) a
    Typer app of subcommands."""

    module: str
    attr: str
    group: bool = False
    hidden: bool = False


# In the order `--help` lists them (typer lists the commands, then the groups).
COMMANDS = {
    "image": Command("image", "app", group=True),
    "install": Command("install", "app", group=True),
    "container": Command("container", "app", group=True),
    "kickstart": Command("kickstart", "app", group=True),
    "build": Command("build", "build"),
    "status": Command("host", "status"),
    "upgrade": Command("update", "upgrade"),
    "switch": Command("update", "switch"),
    "rollback": Command("update", "rollback"),
    "usr-overlay": Command("update", "usr_overlay"),
    "update-agent": Command("agent", "update_agent", hidden=True),
    "internals": Command("host", "internals", group=True, hidden=True),
}
# The global options before the command; these take a value.
_VALUE_OPTIONS = ("--progress-fd",)


def command_named(argv: list[str]) -> str | None:
    """The command `argv` runs, if it names one (global options may come first)."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in _VALUE_OPTIONS:
            i += 2
            continue
        if not arg.startswith("-"):
            return arg if arg in COMMANDS else None
        i += 1
    return None


def make_app(only: str | None = None) -> typer.Typer:
    """The CLI with every command, or with `only` that one. Each command's module is imported
    only here: the boot-time units (healthcheck, update-agent, bootloader-sync) and `status`
    do not load the install and build machinery, which costs about a second per start under
    qemu without KVM."""
    app = typer.Typer(name="bootc-py", help=HELP, no_args_is_help=True, add_completion=False,
                      pretty_exceptions_enable=False,
                      context_settings={"help_option_names": ["-h", "--help"]})
    for name, cmd in COMMANDS.items():
        if only is not None and name != only:
            continue
        obj = getattr(importlib.import_module(f"bootc_py.commands.{cmd.module}"), cmd.attr)
        if cmd.group:
            app.add_typer(obj, name=name, hidden=cmd.hidden)
        else:
            app.command(name, hidden=cmd.hidden)(obj)
    app.callback()(_global)
    return app


def _version(value: bool) -> None:
    if value:
        typer.echo(f"bootc-py {__version__}")
        raise typer.Exit()


def _global(
    verbose: int = typer.Option(0, "--verbose", "-v", count=True,
                                help="More output: -v for details, -vv for every command run."),
    progress_fd: int = typer.Option(None, "--progress-fd", metavar="FD",
                                    help="Write progress as JSON lines to this file descriptor."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    log.setup(verbose=verbose, progress_fd=progress_fd)


def _drop_stdout() -> None:
    """What stdout still buffers cannot be written: send it to /dev/null, so the interpreter's
    flush at exit does not print a second error."""
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; every BootcPyError becomes `error: <message>` and a non-zero exit."""
    signals.install()
    args = sys.argv[1:] if argv is None else argv
    app = make_app(command_named(args))
    try:
        result = app(args=args, standalone_mode=False)
        sys.stdout.flush()  # here, where a full or closed stdout is an error, not at exit
    except BootcPyError as exc:
        logging.getLogger("bootc_py").debug("error details", exc_info=True)
        for line in getattr(exc, "problems", None) or [exc.message]:  # ConfigProblems: all
            print(f"error: {line}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort as exc:  # click turns Ctrl-C into Abort, as a "no" at a prompt
        signals.ignore()
        interrupted = isinstance(exc.__cause__ or exc.__context__, KeyboardInterrupt)
        print(f"error: {'interrupted' if interrupted else 'aborted'}", file=sys.stderr)
        sys.exit(130)
    except KeyboardInterrupt:
        signals.ignore()
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    except signals.Terminated as exc:
        signals.ignore()
        print(f"error: terminated by {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except BrokenPipeError:
        _drop_stdout()
        sys.exit(141)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        from bootc_py.image.cache import default_cache_dir
        from bootc_py.nospace import no_space, unnamed_write

        full = no_space(Path(exc.filename), None, f"writing {exc.filename}") if exc.filename \
            else unnamed_write(default_cache_dir())
        _drop_stdout()
        print(f"error: {full.message}\nhint: {full.hint}", file=sys.stderr)
        sys.exit(1)
    # With standalone_mode off, click returns (rather than raises) the code of a typer.Exit.
    if isinstance(result, int) and result != 0:
        sys.exit(result)


if __name__ == "__main__":
    main()
