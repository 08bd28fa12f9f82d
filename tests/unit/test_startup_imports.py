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
