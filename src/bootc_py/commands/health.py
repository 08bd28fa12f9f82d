"""`bootc-py internals healthcheck`: what bootc-py-healthcheck.service runs at every boot."""

from __future__ import annotations

from pathlib import Path

import typer


def healthcheck(
    root: Path = typer.Option(Path("/"), "--root", help="The booted system's root."),
    boot: Path = typer.Option(Path("/boot"), "--boot", help="The mounted /boot filesystem."),
    no_reboot: bool = typer.Option(False, "--no-reboot",
                                   help="Do not reboot after a red boot, only report it."),
) -> None:
    """Run the greenboot-layout health checks, record the verdict, mark the boot good or
    reboot into the next try."""
    from bootc_py.run import run
    from bootc_py.update.health import BootUnhealthy, healthcheck

    result = healthcheck(root, boot)
    if result.fallback is not None:
        typer.echo(f"bootc-py: the bootloader fell back from {result.fallback.describe()}; "
                   "this deployment is the default again, automatic updates skip that image")
    verdict = result.verdict
    for check in verdict.results:
        typer.echo(f"  {check.kind.value:8} {check.name}: {check.detail}")
    typer.echo(f"bootc-py: health of {verdict.deployment[:12]}: {verdict.summary()}; "
               f"{result.bootloader}")
    if verdict.failed_required:
        if result.reboot and not no_reboot:
            run(["systemctl", "reboot", "--no-block"])
        names = ", ".join(c.name for c in verdict.failed_required)
        raise BootUnhealthy(f"required health checks failed: {names}",
                            "see `journalctl -u bootc-py-healthcheck`; the bootloader falls "
                            "back to the previous deployment when the tries are spent")
