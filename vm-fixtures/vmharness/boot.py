"""One cold boot that returns the guest's check report: the common case, in one call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vmharness.qemu import DEFAULT_CHECK_TIMEOUT, VM, Drive


def boot_check(*drives: Drive | Path | str, timeout: float = DEFAULT_CHECK_TIMEOUT,
               poweroff: bool = True, shutdown_timeout: float = 180,
               **vm_args: Any) -> dict[str, Any]:
    """Boot cold, wait for the BOOTC-PY-CHECK report, shut down; return the report.

    With `poweroff` (the default) the guest powers itself off after reporting, so what it
    wrote to its disks is on them cleanly; otherwise qemu is simply stopped. `vm_args` go to
    `VM` (firmware, cdrom, kernel/initrd/append, script, workdir, name, ...). The report gains
    `harness`: seconds to the report, total seconds, firmware, qemu's exit status.
    """
    with VM(drives=drives, poweroff_after_check=poweroff, **vm_args) as vm:
        report = vm.check(timeout)
        status = vm.wait_exit(shutdown_timeout) if poweroff else None
        report.setdefault("harness", {}).update(
            firmware=vm.firmware, seconds_total=round(vm.elapsed, 1), exit_status=status,
            serial_log=str(vm.serial_log))
    return report
