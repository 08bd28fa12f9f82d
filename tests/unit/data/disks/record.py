"""Record the recorded snapshots of this directory (as root; see README.md).

A developer script, not a test: it creates sparse files and loop devices under
/run/bootc-py-snap and removes them again.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from bootc_py.disk.apply import apply_plan
from bootc_py.disk.discover import disk_info
from bootc_py.disk.loop import LoopDevice, create_sparse
from bootc_py.disk.mount import Mount
from bootc_py.disk.plan import plan_disk

OUT = Path(__file__).resolve().parent
WORK = Path("/run/bootc-py-snap")
LVM = "devices { obtain_device_list_from_udev=0 } activation { udev_sync=0 udev_rules=0 }"
GiB = 1 << 30


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)


def save(name: str, device: Path) -> None:
    (OUT / f"{name}.json").write_text(disk_info(device).to_json())
    print("recorded", name)


def blank(name: str, size: int, sector_size: int | None = None) -> None:
    f = create_sparse(WORK / f"{name}.raw", size)
    with LoopDevice(f, sector_size=sector_size) as loop:
        save(name, loop.path)
    f.unlink()


def main() -> None:
    WORK.mkdir(exist_ok=True)
    blank("loop-4g-empty", 4 * GiB)
    blank("disk-20g-empty", 20 * GiB)
    blank("loop-8g-4kn-empty", 8 * GiB, 4096)
    blank("loop-1g-small", 1 * GiB)

    f = create_sparse(WORK / "inst.raw", 4 * GiB)
    with LoopDevice(f) as loop:
        apply_plan(loop.path, plan_disk(4 * GiB))
        save("loop-4g-installed", loop.path)
        save("loop-4g-partition", loop.partition(2))
        with Mount(loop.partition(4), WORK / "mnt"), Mount(loop.partition(3), WORK / "mnt/boot"):
            save("loop-4g-mounted", loop.path)
        sh("mkswap", "-q", str(loop.partition(3)))
        sh("swapon", str(loop.partition(3)))
        try:
            save("loop-4g-swap", loop.path)
        finally:
            sh("swapoff", str(loop.partition(3)))
    f.unlink()

    f = create_sparse(WORK / "xfs.raw", 4 * GiB)
    with LoopDevice(f) as loop:
        sh("mkfs.xfs", "-q", "-L", "data", str(loop.path))
        save("loop-4g-whole-xfs", loop.path)
    f.unlink()

    # No device-mapper in this kernel: a PV and a VG, but no active LV.
    f = create_sparse(WORK / "lvm.raw", 4 * GiB)
    with LoopDevice(f) as loop:
        sh("sgdisk", "-n", "1:0:0", "-t", "1:8E00", "-c", "1:lvm", str(loop.path))
        loop.rescan()
        part = str(loop.partition(1))
        sh("pvcreate", "-q", "--config", LVM, part)
        sh("vgcreate", "-q", "--config", LVM, "vg-snap", part)
        try:
            save("loop-4g-lvm-pv", loop.path)
        finally:
            sh("vgremove", "-q", "-f", "--config", LVM, "vg-snap")
            sh("pvremove", "-q", "--config", LVM, part)
    f.unlink()
    save("vda-running-root", Path("/dev/vda"))
    for d in (WORK / "mnt", WORK):
        d.rmdir()


if __name__ == "__main__":
    main()
