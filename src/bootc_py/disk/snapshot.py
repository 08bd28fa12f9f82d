"""Record a JSON snapshot of a real block device, for the unit tests' planning and checks.

    python -m bootc_py.disk.snapshot /dev/loop0 > tests/unit/data/disks/NAME.json

A small developer tool, not part of the bootc-py CLI; it only reads.
"""

from __future__ import annotations

import sys
from pathlib import Path

from bootc_py.disk.discover import disk_info
from bootc_py.errors import BootcPyError


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0].startswith("-"):
        sys.stderr.write("usage: python -m bootc_py.disk.snapshot DEVICE\n")
        return 2
    try:
        sys.stdout.write(disk_info(Path(args[0])).to_json())
    except BootcPyError as exc:
        sys.stderr.write(f"error: {exc.message}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
