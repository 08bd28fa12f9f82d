"""Commands for the installed host: `bootc-py status`, and hidden `internals`."""

from __future__ import annotations

import json
from pathlib import Path

import typer

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
    format: str = typer.Option("humanreadable", "--format", metavar="humanreadable|json",
                               help="Output format."),
    sysroot: Path = typer.Option(Path("/"), "--sysroot",
                                 help="Read a mounted (not booted) sysroot instead of this "
                                 "host."),
) -> None:
    """Show the booted, staged and rollback images (bootc's status schema with --json)."""
    from bootc_py.errors import UsageError
    from bootc_py.update.status import read_status

    if format not in ("humanreadable", "json"):
        raise UsageError(f"unknown format '{format}'", "use humanreadable or json")
    if not (sysroot / "ostree/repo").is_dir():
        if sysroot == Path("/"):  # as bootc does on a host it did not deploy: say so, exit 0
            typer.echo(json.dumps(NOT_DEPLOYED, indent=2) if json_out or format == "json"
                       else "System is not deployed via bootc-py.")
            return
        why = ("does not exist" if not sysroot.exists() else "is not a directory"
               if not sysroot.is_dir() else "is not an ostree sysroot (no ostree/repo)")
        raise UsageError(f"--sysroot {sysroot} {why}", "give the mounted root of an install")
    host = read_status(sysroot)
    if json_out or format == "json":
        typer.echo(json.dumps(host.to_bootc(), indent=2))
    else:
        typer.echo(host.render(), nl=False)


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
