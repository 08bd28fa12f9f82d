"""The qemu test harness: cold TCG boots, the serial console, the guest's check report.

    from vmharness import VM, Drive, boot_check
    facts = boot_check(Drive(disk, snapshot=True), firmware="bios")
"""

from __future__ import annotations

from vmharness.boot import boot_check
from vmharness.disks import Rootfs, direct_boot_append, flatten, make_ext4_disk
from vmharness.errors import VMError, VMExited, VMTimeout
from vmharness.qemu import CHECK_MARKER, VM, Drive, Firmware, Forward, GuestForward

__all__ = [
    "CHECK_MARKER",
    "VM",
    "Drive",
    "Firmware",
    "Forward",
    "GuestForward",
    "Rootfs",
    "VMError",
    "VMExited",
    "VMTimeout",
    "boot_check",
    "direct_boot_append",
    "flatten",
    "make_ext4_disk",
]
