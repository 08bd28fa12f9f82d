#!/usr/bin/env python3
"""Benchmark: `build --type iso` of the sample image, total and per step, against a floor
measured in the same run: mksquashfs of the same rootfs (the same options) plus xorriso of a
tree of the same size (the squashfs, the kernel and the payload blobs). Goal: <= 1.3x.
Run as root: .venv/bin/python benchmarks/iso.py
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "vm-fixtures"))
sys.path.insert(0, str(REPO / "benchmarks"))
BOOTC_PY = Path(sys.executable).parent / "bootc-py"

from progress_steps import run_steps  # noqa: E402

from bootc_py.image.flatten import unpack  # noqa: E402
from bootc_py.image.ref import parse_imgref  # noqa: E402
from bootc_py.image.source import PullOptions, pull  # noqa: E402
from fixture_image import build_images  # noqa: E402


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def build(ref: str, cache: Path, out: Path) -> tuple[float, dict[str, float]]:
    """The build's wall time, flushed to disk like the floor's, and its steps' times."""
    os.sync()
    total, steps = run_steps(BOOTC_PY, ["build", "--type", "iso", "--output", str(out),
                                        "--cache-dir", str(cache), ref])
    start = time.monotonic()
    os.sync()
    steps["sync (after the build)"] = time.monotonic() - start
    return total + steps["sync (after the build)"], steps


def floor(ref: str, cache: Path, work: Path) -> float:
    """The bytes an ISO needs written once: the rootfs squashed, the tree put into an ISO."""
    image = pull(parse_imgref(ref), PullOptions(cache_dir=cache))
    rootfs = work / "rootfs"
    unpack(image, rootfs)  # not timed: the build's unpack is one of its own steps
    tree = work / "tree"
    (tree / "LiveOS").mkdir(parents=True)
    os.sync()  # the untimed unpack's writes are not the floor's to flush
    start = time.monotonic()
    # The build's own options, its -processors too (on 2 cores mksquashfs alone is faster
    # with one compressor than with two).
    sh("mksquashfs", str(rootfs), str(tree / "LiveOS/squashfs.img"), "-noappend", "-quiet",
       "-no-progress", "-comp", "zstd", "-Xcompression-level", "3", "-b", "1M", "-xattrs",
       "-processors", str(max(1, (os.cpu_count() or 1) - 1)))
    for layer in image.layers:
        shutil.copyfile(image.blob_path(layer.digest), tree / layer.digest.split(":")[1])
    sh("xorriso", "-as", "mkisofs", "-iso-level", "3", "-R", "-V", "FLOOR", "-o",
       str(work / "floor.iso"), str(tree))
    os.sync()
    return time.monotonic() - start


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="bootc-py-bench-iso-", dir="/var/tmp") as tmp:
        work = Path(tmp)
        oci = work / "oci"
        build_images(["v1"], oci)
        ref = f"oci:{oci}:v1"
        cache = work / "cache"
        floor_s = floor(ref, cache, work / "floor")
        total, steps = build(ref, cache, work / "out")
        size = (work / "out/bootiso/install.iso").stat().st_size
    print(f"floor (mksquashfs of the rootfs + xorriso of the tree): {floor_s:6.1f} s")
    print(f"bootc-py build --type iso:                              {total:6.1f} s "
          f"({size / 1e6:.0f} MB)")
    for name, seconds in steps.items():
        print(f"    {name:<24} {seconds:6.1f} s")
    print(f"build / floor: {total / floor_s:.2f}x (goal <= 1.3x)")
    print(f"load average: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
