#!/usr/bin/env python3
"""Benchmark: `install to-disk --via-loopback` of the sample image against a floor measured in
the same run, and importing v2 after v1 against importing v1 cold.

Floor: `umoci raw unpack` of the same image onto a fresh filesystem of the same type (xfs) on
a loop device: the image's bytes written once. Goals: install <= 2.0x the floor, and the v2
import <= 0.25x the cold v1 import. Run as root: .venv/bin/python benchmarks/install.py
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

from bootc_py.disk.loop import LoopDevice, create_sparse  # noqa: E402
from bootc_py.disk.mount import Mount  # noqa: E402
from bootc_py.image.ref import parse_imgref  # noqa: E402
from bootc_py.image.source import PullOptions, pull  # noqa: E402
from bootc_py.store.importer import import_image  # noqa: E402
from bootc_py.store.repo import OstreeRepo  # noqa: E402
from fixture_image import build_images  # noqa: E402

DISK_SIZE = 4 << 30


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def drop_caches() -> None:
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def floor(oci: Path, tag: str, work: Path) -> float:
    disk = create_sparse(work / "floor.raw", DISK_SIZE)
    with LoopDevice(disk) as loop:
        sh("mkfs.xfs", "-q", "-f", str(loop.path))
        mnt = work / "floor-mnt"
        with Mount(loop.path, mnt):
            drop_caches()
            start = time.monotonic()
            sh("umoci", "raw", "unpack", "--image", f"{oci}:{tag}", str(mnt / "rootfs"))
            os.sync()
            elapsed = time.monotonic() - start
    disk.unlink()
    return elapsed


def install(ref: str, work: Path) -> tuple[float, dict[str, float]]:
    disk = work / "install.raw"
    cache = work / "install-cache"
    drop_caches()
    result = run_steps(BOOTC_PY, ["install", "to-disk", "--via-loopback", "--disk-size",
                                  str(DISK_SIZE), "--cache-dir", str(cache), "--source-imgref",
                                  ref, str(disk)])
    disk.unlink()
    shutil.rmtree(cache, ignore_errors=True)
    return result


def imports(oci: Path, work: Path) -> tuple[float, float]:
    disk = create_sparse(work / "import.raw", DISK_SIZE)
    with LoopDevice(disk) as loop:
        sh("mkfs.xfs", "-q", "-f", str(loop.path))
        mnt = work / "import-mnt"
        with Mount(loop.path, mnt):
            repo = OstreeRepo(mnt / "repo")
            repo.init("bare")
            opts = PullOptions(cache_dir=work / "import-cache")
            v1 = pull(parse_imgref(f"oci:{oci}:v1"), opts)
            v2 = pull(parse_imgref(f"oci:{oci}:v2"), opts)
            drop_caches()
            start = time.monotonic()
            import_image(repo, v1, "docker://bench/image:latest")
            os.sync()
            cold = time.monotonic() - start
            drop_caches()
            start = time.monotonic()
            result = import_image(repo, v2, "docker://bench/image:latest")
            os.sync()
            warm = time.monotonic() - start
            assert result.layers_imported == 1, result
    disk.unlink()
    return cold, warm


def main() -> int:
    if os.geteuid() != 0:
        raise SystemExit("run as root (loop devices, mounts)")
    with tempfile.TemporaryDirectory(prefix="bootc-py-bench-", dir="/var/tmp") as tmp:
        work = Path(tmp)
        oci = work / "oci"
        results = {r.variant: r for r in build_images(["v1", "v2"], oci)}
        size = sum(b.size for b in results["v1"].layers)
        print(f"sample image v1: {len(results['v1'].layers)} layers, {size / 1e6:.0f} MB "
              "compressed")
        floor_s = floor(oci, "v1", work)
        install_s, steps = install(f"oci:{oci}:v1", work)
        cold_s, warm_s = imports(oci, work)
    print(f"floor (umoci raw unpack onto fresh xfs): {floor_s:6.1f} s")
    print(f"bootc-py install to-disk --via-loopback:  {install_s:6.1f} s")
    for name, seconds in steps.items():
        print(f"    {name:<24} {seconds:6.1f} s")
    print(f"install / floor: {install_s / floor_s:.2f}x (goal <= 2.0x)")
    print(f"import v1 cold: {cold_s:.1f} s; import v2 after v1: {warm_s:.1f} s; "
          f"ratio {warm_s / cold_s:.2f}x (goal <= 0.25x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
