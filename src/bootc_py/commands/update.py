"""The updater's verbs, in bootc's spelling: upgrade, switch, rollback, usr-overlay."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from bootc_py.commands.host import SYSROOT

APPLY = typer.Option(False, "--apply", help="Reboot into the new deployment afterwards.")
QUIET = typer.Option(False, "--quiet", help="Print only errors.")


def upgrade(
    check: bool = typer.Option(False, "--check", help="Only check: fetch the manifest and "
                               "config, record the result (status shows cachedUpdate)."),
    apply: bool = APPLY,
    quiet: bool = QUIET,
    download_only: bool = typer.Option(False, "--download-only", help="Stage the update, but "
                                       "keep a reboot from applying it."),
    from_downloaded: bool = typer.Option(False, "--from-downloaded", help="Let an update "
                                         "staged with --download-only apply (no registry "
                                         "contact)."),
    tag: str = typer.Option(None, "--tag", metavar="TAG",
                            help="Follow another tag of the same image."),
    json_out: bool = typer.Option(False, "--json", help="Print the result as one JSON "
                                  "object (with --check: the update found, if any)."),
    sysroot: Path = SYSROOT,
) -> None:
    """Fetch and deploy the newest version of the image this host follows."""
    from bootc_py.update.upgrade import upgrade as run_upgrade

    result = run_upgrade(sysroot, check=check, apply=apply, quiet=quiet,
                         download_only=download_only, from_downloaded=from_downloaded, tag=tag)
    if json_out:
        typer.echo(json.dumps(result.to_json()))
    elif not quiet:
        typer.echo(result.message)


def switch(
    target: str = typer.Argument(..., metavar="TARGET", help="The image to follow, e.g. "
                                 "registry.example/os:stable, or a directory with "
                                 "--transport oci."),
    transport: str = typer.Option("registry", "--transport",
                                  metavar="registry|oci|oci-archive|containers-storage"),
    apply: bool = APPLY,
    retain: bool = typer.Option(False, "--retain", help="Keep the older deployments."),
    mutate_in_place: bool = typer.Option(False, "--mutate-in-place", help="Only change what "
                                         "the current deployment follows; deploy nothing."),
    quiet: bool = QUIET,
    sysroot: Path = SYSROOT,
) -> None:
    """Deploy another image and follow it from now on."""
    from bootc_py.update.switch import switch as run_switch

    result = run_switch(sysroot, target, transport=transport, apply=apply, retain=retain,
                        mutate_in_place=mutate_in_place, quiet=quiet)
    if not quiet:
        typer.echo(result.message)


def rollback(apply: bool = APPLY, sysroot: Path = SYSROOT) -> None:
    """Make the rollback deployment the default (a staged one is dropped)."""
    from bootc_py.update.rollback import rollback as run_rollback

    typer.echo(run_rollback(sysroot, apply=apply).message)


def usr_overlay() -> None:
    """A transient writable /usr (an overlay, discarded at the next boot)."""
    from bootc_py.store.sysroot import Sysroot

    Sysroot(Path("/")).unlock_usr()
    typer.echo("/usr is writable until the next boot.")
