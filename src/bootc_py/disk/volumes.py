"""Apply the volume part of a LayoutPlan: LVM (pvcreate, vgcreate, lvcreate, mkfs) and btrfs
(mkfs.btrfs over the members, subvolumes), after disk/apply.py wrote the partitions.

Returns, for every mount of the plan, the device to mount, its filesystem UUID and options.
LVM runs without udev here (containers, CI): lvm creates the device nodes itself. Every volume
group made is deactivated by the ExitStack, before its loop device is detached.
"""

from __future__ import annotations

import contextlib
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from bootc_py.disk.devices import fs_uuid
from bootc_py.disk.layout import LayoutPlan
from bootc_py.disk.mkfs import make_filesystem
from bootc_py.disk.mount import Mount
from bootc_py.errors import DiskError, ToolMissingError
from bootc_py.run import DEVICE_TIMEOUT, run

# No udev in containers and CI: lvm must not wait for it, and must make /dev nodes itself.
LVM_CONFIG = ("activation { udev_sync = 0 udev_rules = 0 verify_udev_operations = 1 } "
              "devices { obtain_device_list_from_udev = 0 }")


def device_mapper_available(misc: Path = Path("/proc/misc")) -> bool:
    """Whether the kernel has the device-mapper driver LVM needs (a /dev/mapper/control node
    can exist without it, in containers)."""
    try:
        return any(line.split()[-1:] == ["device-mapper"]
                   for line in misc.read_text().splitlines())
    except OSError:
        return False


@dataclass(frozen=True)
class Formatted:
    device: Path
    uuid: str
    fstype: str
    options: str            # mount options (subvol=... for btrfs subvolumes)


def lvm(*args: str) -> list[str]:
    return ["lvm", args[0], "--config", LVM_CONFIG, *args[1:]]


def load_device_mapper() -> bool:
    """Whether device-mapper is there, loading dm_mod first if needed (a freshly booted
    installer has not loaded it: nothing used LVM yet)."""
    if device_mapper_available():
        return True
    with contextlib.suppress(ToolMissingError):  # no kmod (a container): checked below
        run(["modprobe", "dm_mod"], check=False, quiet=True)
    return device_mapper_available()


def deactivate(vg: str) -> None:
    if Path("/run/udev/control").exists():
        # udev (a booted installer) may still be probing the LVs: they would be "in use".
        run(["udevadm", "settle", "--timeout=60"], check=False, quiet=True,
            timeout=DEVICE_TIMEOUT)
    run(lvm("vgchange", "--activate", "n", vg), quiet=True)


def apply_volumes(layout: LayoutPlan, nodes: dict[int, Path], stack: ExitStack
                  ) -> dict[str, Formatted]:
    """Create the plan's VGs, LVs and btrfs volumes; return every mount's Formatted device."""
    made: dict[str, Formatted] = {}
    for vg in layout.volume_groups:
        pvs = [str(nodes[n]) for n in vg.pvs]
        for pv in pvs:
            run(lvm("pvcreate", "--yes", "--force", pv), quiet=True)
        run(lvm("vgcreate", "--yes", "--physicalextentsize", f"{vg.pe_size // 1024}k",
                vg.name, *pvs), quiet=True)
        stack.callback(deactivate, vg.name)
        for lv in (x for x in layout.logical_volumes if x.vg == vg.name):
            run(lvm("lvcreate", "--yes", "--wipesignatures", "y", "--zero", "y",
                    "--size", f"{lv.size_bytes // 1024}k", "--name", lv.name, vg.name),
                quiet=True)
            dev = Path(f"/dev/{vg.name}/{lv.name}")
            if not dev.exists():
                run(lvm("vgmknodes", vg.name), quiet=True)
            make_filesystem(dev, lv.fstype, lv.label)
            made[f"lv:{vg.name}/{lv.name}"] = Formatted(dev, fs_uuid(dev), lv.fstype,
                                                        "defaults")
    for vol in layout.btrfs:
        members = [str(nodes[n]) for n in vol.members]
        argv = ["mkfs.btrfs", "-f", "-q", "-L", vol.label]
        if vol.data_level:
            argv += ["-d", vol.data_level]
        if vol.metadata_level:
            argv += ["-m", vol.metadata_level]
        run([*argv, *members], quiet=True)
        if len(members) > 1:
            run(["btrfs", "device", "scan", *members], quiet=True)
        dev = Path(members[0])
        uuid = fs_uuid(dev)
        with tempfile.TemporaryDirectory(prefix="bootc-py-btrfs-") as top, \
                Mount(dev, Path(top), fstype="btrfs"):
            for sub in vol.subvolumes:
                run(["btrfs", "subvolume", "create", str(Path(top) / sub)], quiet=True)
        made[f"btrfs:{vol.label}"] = Formatted(dev, uuid, "btrfs", "defaults")
    out: dict[str, Formatted] = {}
    for m in layout.mounts:
        if m.source.startswith("part:"):
            continue
        base = made.get(m.source)
        if base is None:
            raise DiskError(f"the layout's {m.mountpoint} has no device ({m.source})")
        options = m.options if m.subvol else base.options
        out[m.mountpoint] = Formatted(base.device, base.uuid, base.fstype, options)
    return out
