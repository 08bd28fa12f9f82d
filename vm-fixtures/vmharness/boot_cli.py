"""`vm-fixtures/boot DISK`: boot a disk under qemu TCG and print the guest's check JSON."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from vmharness.boot import boot_check
from vmharness.errors import VMError
from vmharness.qemu import DEFAULT_CHECK_TIMEOUT, Drive


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="boot",
        description="Boot DISK (raw or qcow2) cold under qemu TCG, wait for the sample image's "
                    "BOOTC-PY-CHECK report and print it as JSON.")
    p.add_argument("disk", nargs="+", type=Path, help="virtio disks, the first one boots")
    p.add_argument("--firmware", choices=("uefi", "bios"), default="uefi")
    p.add_argument("--cdrom", type=Path, help="an ISO on virtio-scsi, booted first")
    p.add_argument("--timeout", type=float, default=DEFAULT_CHECK_TIMEOUT,
                   help="seconds to wait for the report (default %(default)s)")
    p.add_argument("--kernel", type=Path, help="boot this kernel directly (-kernel)")
    p.add_argument("--initrd", type=Path)
    p.add_argument("--append", help="kernel command line with --kernel")
    p.add_argument("--script", help="shell snippet the guest runs before reporting")
    p.add_argument("--snapshot", action="store_true",
                   help="leave the disks unchanged (writes go to a throwaway overlay)")
    p.add_argument("--keep-running", action="store_true",
                   help="do not power the guest off after the report (qemu is stopped)")
    p.add_argument("--workdir", type=Path,
                   help="where serial.log and the rest go (default: a temporary directory)")
    args = p.parse_args(argv)

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bootc-py-boot-"))
    print(f"boot: serial console in {workdir / 'serial.log'}", file=sys.stderr)
    try:
        report = boot_check(
            *[Drive(d, snapshot=args.snapshot) for d in args.disk], timeout=args.timeout,
            poweroff=not args.keep_running, firmware=args.firmware, cdrom=args.cdrom,
            kernel=args.kernel, initrd=args.initrd, append=args.append, script=args.script,
            workdir=workdir, name=args.disk[0].name)
    except VMError as exc:
        print(f"boot: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("boot: interrupted", file=sys.stderr)
        return 130
    print(json.dumps(report, indent=2, sort_keys=True))
    return 0
