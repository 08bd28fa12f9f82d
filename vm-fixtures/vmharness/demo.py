"""The README's first command: build the sample image, make a qcow2 of it with bootc-py, boot
it under qemu (UEFI) and print what the guest reported."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from fixture_image import FixtureError, build_images
from vmharness.boot import boot_check
from vmharness.errors import VMError
from vmharness.qemu import Drive

REPO = Path(__file__).resolve().parents[2]
BOOTC_PY = REPO / ".venv" / "bin" / "bootc-py"


def say(msg: str) -> None:
    print(f"demo: {msg}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="demo", description=__doc__)
    p.add_argument("--workdir", type=Path, default=REPO / "out" / "demo",
                   help="where the image, the disk and the serial log go (default %(default)s)")
    p.add_argument("--firmware", choices=("uefi", "bios"), default="uefi")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        say("error: run as root (the image build and bootc-py use loop devices and chroot)")
        return 1
    work: Path = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    try:
        say("building the sample image v1 (about 2 minutes the first time, seconds after)")
        [image] = build_images(["v1"], work / "oci")
        say(f"image {image.ref}")

        out = work / "build"
        if out.exists():
            shutil.rmtree(out)
        argv_build = [str(BOOTC_PY), "build", "--type", "qcow2", "--output", str(out), image.ref]
        say("$ " + " ".join(argv_build))
        res = subprocess.run(argv_build, stdout=sys.stderr, check=False)  # stdout: the JSON
        disk = out / "qcow2" / "disk.qcow2"
        if res.returncode != 0 or not disk.exists():
            say(f"error: bootc-py build failed (exit {res.returncode}); no {disk}")
            return 1

        say(f"booting {disk} under qemu TCG ({args.firmware}); serial console in "
            f"{work / 'vm' / 'serial.log'}")
        report = boot_check(Drive(disk), firmware=args.firmware, workdir=work / "vm",
                            name="demo")
    except (FixtureError, VMError) as exc:
        say(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    print(json.dumps(report, indent=2, sort_keys=True))
    mounts = report.get("mounts", {})
    deployment = (report.get("ostree") or {}).get("booted_deployment") or {}
    say(f"variant {report.get('variant')}, state {report.get('system_state')}, "
        f"/usr writable={mounts.get('/usr', {}).get('writable')}, "
        f"/etc writable={mounts.get('/etc', {}).get('writable')}, "
        f"/var writable={mounts.get('/var', {}).get('writable')}, "
        f"ostree deployment {deployment.get('checksum', '-')[:12]}; "
        f"report {report['harness']['seconds_to_report']} s after qemu started; "
        f"{time.monotonic() - t0:.0f} s in all")
    return 0
