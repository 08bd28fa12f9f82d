"""Commands for the installed host: `bootc-py status`, and hidden `internals`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from bootc_py.commands import health as _health

SYSROOT = typer.Option(Path("/"), "--sysroot", metavar="PATH",
                       help="Work on a mounted (not booted) sysroot instead of this host: "
                       "nothing is staged, a new deployment is the default at once.")

internals = typer.Typer(help="Internal commands run by bootc-py's own systemd units.",
                        no_args_is_help=True, hidden=True)


# bootc's `status --json` on a host it did not deploy: a BootcHost with nothing booted.
NOT_DEPLOYED = {
    "apiVersion": "org.containers.bootc/v1", "kind": "BootcHost", "metadata": {"name": "host"},
    "spec": {"image": None, "bootOrder": "default"},
    "status": {"staged": None, "booted": None, "rollback": None, "rollbackQueued": False,
               "type": None},
}


def status(
    json_out: bool = typer.Option(False, "--json", help="Print JSON (same as --format=json)."),
    format: str = typer.Option(None, "--format", metavar="humanreadable|yaml|json",
                               help="Output format (default: humanreadable on a terminal, "
                               "yaml otherwise, as bootc)."),
    booted: bool = typer.Option(False, "--booted", help="Only the booted deployment."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show deployment details."),
    sysroot: Path = SYSROOT,
) -> None:
    """Show the booted, staged and rollback images (bootc's BootcHost schema)."""
    from bootc_py.errors import UsageError
    from bootc_py.update.status import Format, read_status

    if json_out:
        fmt = Format.JSON
    elif format is None:
        fmt = Format.HUMAN if sys.stdout.isatty() else Format.YAML
    else:
        try:
            fmt = Format(format)
        except ValueError:
            raise UsageError(f"unknown format '{format}'",
                             "use humanreadable, yaml or json") from None
    if not (sysroot / "ostree/repo").is_dir():
        if sysroot == Path("/"):  # as bootc does on a host it did not deploy: say so, exit 0
            typer.echo(json.dumps(NOT_DEPLOYED, indent=2) if fmt is Format.JSON
                       else "System is not deployed via bootc-py.")
            return
        why = ("does not exist" if not sysroot.exists() else "is not a directory"
               if not sysroot.is_dir() else "is not an ostree sysroot (no ostree/repo)")
        raise UsageError(f"--sysroot {sysroot} {why}", "give the mounted root of an install")
    host = read_status(sysroot)
    typer.echo(host.render(fmt, verbose=verbose, booted_only=booted), nl=False)


@internals.command("bootloader-sync")
def bootloader_sync(
    boot: Path = typer.Option(Path("/boot"), "--boot", help="The mounted /boot filesystem."),
) -> None:
    """Regenerate bootloader configuration from /boot/loader/entries (grub.cfg, ESP copies).

    Run at shutdown by bootc-py-bootloader-sync.service, after ostree finalizes a staged
    deployment, and by bootc-py itself after any deployment change.
    """
    from bootc_py.bootloader.setup import update

    done = update(boot)
    typer.echo("bootc-py: bootloader in sync: " + (", ".join(done) or "nothing to do"))


internals.command("healthcheck")(_health.healthcheck)
