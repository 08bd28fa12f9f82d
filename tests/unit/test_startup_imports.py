"""What the boot-time units and `status` load: the pull machinery (requests, urllib3) stays out.

Every boot runs `bootc-py internals healthcheck` and `bootc-py update-agent --steady-state`
before boot-complete.target, and operators run `status` often: on a slow machine (a small VM,
qemu without KVM) importing requests costs more than their whole work.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

# The modules each of those commands imports on its way (cli first, as /usr/bin/bootc-py does).
PATHS = {
    "status": ["bootc_py.cli", "bootc_py.update.status"],
    "healthcheck": ["bootc_py.cli", "bootc_py.update.health", "bootc_py.run"],
    "steady-state": ["bootc_py.cli", "bootc_py.update.agent", "bootc_py.update.policy",
                     "bootc_py.update.host", "bootc_py.update.health"],
}


@pytest.mark.host_tools  # a fresh interpreter: this one has imported everything already
@pytest.mark.parametrize("command", sorted(PATHS))
def test_boot_time_commands_do_not_load_the_http_stack(command: str) -> None:
    code = ("import importlib, sys\n"
            f"for m in {PATHS[command]!r}: importlib.import_module(m)\n"
            "print(' '.join(sorted(m for m in ('requests', 'urllib3', 'tqdm') "
            "if m in sys.modules)))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert res.stdout.strip() == "", f"`{command}` loads {res.stdout.strip()}"


# The command lines the boot-time units and the check of every boot run, and what none of
# them may build its CLI from: the install, build and image machinery (about a second of
# every start under qemu without KVM).
BOOT_TIME_ARGV = ["status --json", "-v status", "internals healthcheck",
                  "update-agent --steady-state", "internals bootloader-sync"]
NOT_AT_BOOT = ("bootc_py.commands.install", "bootc_py.commands.build", "bootc_py.commands.image",
               "bootc_py.commands.kickstart", "bootc_py.installer.plan", "bootc_py.image.cache",
               "bootc_py.disk.model")


@pytest.mark.host_tools  # a fresh interpreter
@pytest.mark.parametrize("argv", BOOT_TIME_ARGV)
def test_a_boot_time_command_line_loads_only_its_own_command(argv: str) -> None:
    code = ("import sys\n"
            "from bootc_py import cli\n"
            f"cli.make_app(cli.command_named({argv.split()!r}))\n"
            f"print(' '.join(m for m in {NOT_AT_BOOT!r} if m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert res.stdout.strip() == "", f"`bootc-py {argv}` loads {res.stdout.strip()}"
