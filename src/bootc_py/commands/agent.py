"""`bootc-py update-agent`: what bootc-py-fetch-apply-updates.service runs (hidden)."""

from __future__ import annotations

from pathlib import Path

import typer

from bootc_py.commands.host import SYSROOT


def update_agent(
    policy: Path = typer.Option(None, "--policy", metavar="FILE",
                                help="The admin's policy file (default "
                                "/etc/bootc-py/updates.toml)."),
    quiet: bool = typer.Option(True, "--quiet/--verbose-upgrade",
                               help="Keep the upgrade's own step log out of the journal."),
    steady_state: bool = typer.Option(False, "--steady-state", hidden=True,
                                      help="Only report steady state (after a green boot)."),
    sysroot: Path = SYSROOT,
) -> None:
    """Check for an update, stage it, and reboot when the policy and its strategy allow
    (by default: `bootc-py upgrade --apply --quiet`)."""
    from bootc_py.update.agent import host_effects, report_steady_state, run_agent
    from bootc_py.update.policy import ADMIN_FILE, load_policy

    if steady_state:  # bootc-py-steady-state.service, once boot-complete.target is reached
        report_steady_state(load_policy(admin=policy or ADMIN_FILE), host_effects(sysroot, quiet))
        return
    # The agent logs its decision itself (the journal has it once); the exit code is 0 for
    # every decision, an error for every failure.
    run_agent(load_policy(admin=policy or ADMIN_FILE), host_effects(sysroot, quiet))
