"""Discovery: what is on a block device, as plain data (`DiskInfo`).

The only module that imports pyudev. pyudev enumerates from sysfs, which works without a running
udevd; what udev's database would add (filesystem types, labels) comes from `blkid -p` and
`wipefs` instead, and usage (mounts, swap, holders, the running root) from /proc and sysfs.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pyudev

from bootc_py.disk.model import DiskInfo, InUse, MountEntry, PartitionInfo, UseKind
from bootc_py.errors import DiskError
from bootc_py.run import DEVICE_TIMEOUT, run

log = logging.getLogger(__name__)

SECTOR = 512  # sysfs counts sizes and offsets in 512-byte units whatever the device's sectors


@dataclass(frozen=True)
class MountInfoLine:
    majmin: tuple[int, int]
    root: str
    mountpoint: str
    fstype: str
    source: str


def parse_mountinfo(text: str) -> list[MountInfoLine]:
    """Parse /proc/<pid>/mountinfo (see proc(5)); octal escapes in paths are decoded."""
    out = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        f = left.split()
        r = right.split()
        if len(f) < 5 or len(r) < 2:
            continue
        major, minor = f[2].split(":")
        out.append(MountInfoLine((int(major), int(minor)), _unescape(f[3]), _unescape(f[4]),
                                 r[0], _unescape(r[1])))
    return out


def parse_swaps(text: str) -> list[str]:
    """Names in /proc/swaps (first column; escapes decoded, ' (deleted)' kept as is)."""
    lines = text.splitlines()[1:]
    return [_unescape(line.split()[0]) for line in lines if line.strip()]


def parse_export(text: str) -> dict[str, str]:
    """`blkid -o export` output to a dict."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


def _unescape(s: str) -> str:
    # The kernel escapes space, tab, newline and backslash as \ooo.
    if "\\" not in s:
        return s
    return s.encode().decode("unicode_escape").encode("latin-1").decode(errors="replace")


def _read(path: str | Path) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def _majmin(dev: pyudev.Device) -> tuple[int, int]:
    return os.major(dev.device_number), os.minor(dev.device_number)


def _attr_int(dev: pyudev.Device, name: str, default: int = 0) -> int:
    try:
        return int(dev.attributes.asint(name))
    except (KeyError, ValueError):
        return default


def _attr_str(dev: pyudev.Device, name: str) -> str | None:
    try:
        value = dev.attributes.asstring(name).strip()
    except (KeyError, UnicodeDecodeError):
        return None
    return value or None


def _blkid(node: Path) -> dict[str, str]:
    """Low-level probe (-p: no cache, works without udev). Empty when nothing is found."""
    if not node.exists():
        return {}
    res = run(["blkid", "-p", "-o", "export", node], check=False, capture=True,
              timeout=DEVICE_TIMEOUT)
    if res.returncode == 0:
        return parse_export(res.stdout)
    if res.returncode != 2:  # 2: nothing found; others: e.g. ambivalent signatures
        types = _wipefs_types(node)
        if types:
            return {"TYPE": "+".join(types)}
    return {}


def _wipefs_types(node: Path) -> list[str]:
    """Every signature on the device itself (wipefs without -a only lists)."""
    if not node.exists():
        return []
    res = run(["wipefs", "--json", node], check=False, capture=True,
              timeout=DEVICE_TIMEOUT)
    if res.returncode != 0 or not res.stdout.strip():
        return []
    sigs = json.loads(res.stdout).get("signatures", [])
    types: list[str] = []
    for sig in sigs:
        if sig.get("type") and sig["type"] not in types:
            types.append(sig["type"])
    return types


def _partition_info(part: pyudev.Device) -> PartitionInfo:
    node = Path(part.device_node or f"/dev/{part.sys_name}")
    probe = _blkid(node)
    number = _attr_int(part, "partition")
    ptype = probe.get("PART_ENTRY_TYPE")
    return PartitionInfo(
        path=node,
        number=number,
        start=_attr_int(part, "start") * SECTOR,
        size=_attr_int(part, "size") * SECTOR,
        fstype=probe.get("TYPE"),
        label=probe.get("LABEL"),
        uuid=probe.get("UUID"),
        parttype=ptype.upper() if ptype else None,
        partuuid=probe.get("PART_ENTRY_UUID"),
        name=probe.get("PART_ENTRY_NAME"),
    )


def _holders(sys_name: str, seen: set[str]) -> Iterable[str]:
    """Names of every device stacked on `sys_name`, recursively (dm, md, ...)."""
    holder_dir = Path("/sys/class/block") / sys_name / "holders"
    try:
        names = sorted(p.name for p in holder_dir.iterdir())
    except OSError:
        return
    for name in names:
        if name in seen:
            continue
        seen.add(name)
        yield name
        yield from _holders(name, seen)


def _holder_use(device: str, holder: str) -> InUse:
    dm_uuid = _read(f"/sys/class/block/{holder}/dm/uuid")
    dm_name = (_read(f"/sys/class/block/{holder}/dm/name") or holder).strip()
    if holder.startswith("md"):
        return InUse(UseKind.RAID, device, holder)
    uuid = (dm_uuid or "").strip()
    if uuid.startswith("LVM-"):
        return InUse(UseKind.LVM, device, dm_name)
    if uuid.startswith("CRYPT-"):
        return InUse(UseKind.CRYPT, device, dm_name)
    return InUse(UseKind.DM, device, dm_name)


def _mount_tables() -> list[MountInfoLine]:
    """Mounts of this namespace and of PID 1's (the host's, when run with --pid=host)."""
    lines: list[MountInfoLine] = []
    seen: set[tuple[tuple[int, int], str, str]] = set()
    for pid in ("self", "1"):
        text = _read(f"/proc/{pid}/mountinfo")
        for m in parse_mountinfo(text or ""):
            key = (m.majmin, m.mountpoint, m.source)
            if key not in seen:
                seen.add(key)
                lines.append(m)
    return lines


def _root_mounts() -> list[MountInfoLine]:
    roots = []
    for pid in ("self", "1"):
        text = _read(f"/proc/{pid}/mountinfo")
        roots += [m for m in parse_mountinfo(text or "") if m.mountpoint == "/"]
    return roots


def _resolve(path: str) -> str:
    try:
        return os.path.realpath(path)
    except OSError:
        return path


def disk_info(device: Path) -> DiskInfo:
    """Everything bootc-py needs to know about `device` before deciding to write to it."""
    path = Path(device)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise DiskError(f"{path} does not exist", "list the disks with 'lsblk'") from None
    except OSError as exc:
        raise DiskError(f"cannot access {path}: {exc.strerror}") from None
    if not stat.S_ISBLK(st.st_mode):
        raise DiskError(f"{path} is not a block device",
                        "to install into an image file use --via-loopback") from None
    real = Path(os.path.realpath(path))

    context = pyudev.Context()
    try:
        dev = pyudev.Devices.from_device_number(context, "block", st.st_rdev)
    except pyudev.DeviceNotFoundError:
        raise DiskError(f"{path} is not known to the kernel (no entry in /sys)") from None

    is_partition = dev.device_type == "partition"
    parts = [] if is_partition else sorted(
        (c for c in dev.children if c.device_type == "partition" and c.parent == dev),
        key=lambda c: _attr_int(c, "partition"))

    names, in_use = _stack(dev, parts, real)
    mounts, more_use = _usage(names)
    in_use += more_use

    whole = _blkid(real)
    return DiskInfo(
        path=real,
        size_bytes=_attr_int(dev, "size") * SECTOR,
        logical_sector_size=_attr_int(dev.parent if is_partition else dev,
                                      "queue/logical_block_size", 512),
        physical_sector_size=_attr_int(dev.parent if is_partition else dev,
                                       "queue/physical_block_size", 512),
        model=_attr_str(dev, "device/model"),
        is_loop=dev.sys_name.startswith("loop"),
        backing_file=_attr_str(dev, "loop/backing_file"),
        is_partition=is_partition,
        parent=Path(dev.parent.device_node) if is_partition and dev.parent.device_node else None,
        read_only=_attr_int(dev, "ro") == 1,
        pttype=whole.get("PTTYPE"),
        signatures=tuple(_wipefs_types(real)),
        partitions=tuple(_partition_info(p) for p in parts),
        mounts=tuple(mounts),
        in_use=tuple(in_use),
    )


def _stack(dev: pyudev.Device, parts: list[pyudev.Device],
           real: Path) -> tuple[dict[str, str], list[InUse]]:
    """Every device whose use makes this disk busy (itself, its partitions, everything stacked
    on them) as sys name -> the disk or partition it belongs to; and the holders found."""
    names: dict[str, str] = {dev.sys_name: str(real)}
    for p in parts:
        names[p.sys_name] = p.device_node or f"/dev/{p.sys_name}"
    in_use: list[InUse] = []
    seen: set[str] = set(names)
    for own, node in list(names.items()):
        for holder in _holders(own, seen):
            in_use.append(_holder_use(node, holder))
            names[holder] = node
    return names, in_use


def _usage(names: dict[str, str]) -> tuple[list[MountEntry], list[InUse]]:
    """Mounts, the running root and swap on any of `names` (sys name -> owning device)."""
    majmins: dict[tuple[int, int], str] = {}
    paths: dict[str, str] = {}
    for name, owner in names.items():
        num = _read(f"/sys/class/block/{name}/dev")
        if num:
            major, minor = num.strip().split(":")
            majmins[(int(major), int(minor))] = owner
        paths[f"/dev/{name}"] = owner
        dm_name = _read(f"/sys/class/block/{name}/dm/name")
        if dm_name:
            paths[f"/dev/mapper/{dm_name.strip()}"] = owner

    def owner_of(m: MountInfoLine) -> str | None:
        # btrfs reports an anonymous device number: fall back to the source's path.
        return majmins.get(m.majmin) or paths.get(m.source) or paths.get(_resolve(m.source))

    mounts = []
    for m in _mount_tables():
        found = owner_of(m)
        if found:
            mounts.append(MountEntry(device=found, mountpoint=m.mountpoint, fstype=m.fstype))
    in_use: list[InUse] = []
    for m in _root_mounts():
        found = owner_of(m)
        if found and not in_use:
            in_use.append(InUse(UseKind.ROOT, found, "/"))
    for name in parse_swaps(_read("/proc/swaps") or ""):
        in_use += _swap_use(name, majmins, paths)
    return mounts, in_use


def _swap_use(name: str, majmins: dict[tuple[int, int], str],
              paths: dict[str, str]) -> list[InUse]:
    """Swap on one of our devices, or a swap file on one of our filesystems."""
    owner: str | None
    try:
        st = os.stat(name)
    except OSError:
        owner = paths.get(name)
        return [InUse(UseKind.SWAP, owner, name)] if owner else []
    if stat.S_ISBLK(st.st_mode):
        key = (os.major(st.st_rdev), os.minor(st.st_rdev))
        owner = majmins.get(key) or paths.get(_resolve(name))
        return [InUse(UseKind.SWAP, owner, name)] if owner else []
    owner = majmins.get((os.major(st.st_dev), os.minor(st.st_dev)))
    return [InUse(UseKind.SWAP, owner, f"swap file {name}")] if owner else []


@dataclass(frozen=True)
class BlockStack:
    """What a filesystem's block device sits on: the whole disks under it, and the device-mapper
    volume in between (an LVM logical volume: `lvm` is its dm name)."""

    device: str
    disks: tuple[str, ...]
    lvm: str | None = None


def _slaves_disks(name: str, seen: set[str], sys: Path) -> set[str]:
    """Whole-disk names under block device `name` (through dm/md slaves and partitions)."""
    if name in seen:
        return set()
    seen.add(name)
    sysdir = sys / "class/block" / name
    try:
        slaves = sorted(p.name for p in (sysdir / "slaves").iterdir())
    except OSError:
        slaves = []
    if slaves:
        found: set[str] = set()
        for slave in slaves:
            found |= _slaves_disks(slave, seen, sys)
        return found
    if (sysdir / "partition").exists():
        return {sysdir.resolve().parent.name}
    return {name}


def block_stack(device: str, sys: Path = Path("/sys")) -> BlockStack:
    """The disks under `device` (e.g. /dev/mapper/vg-root on /dev/vda3 and /dev/vdb)."""
    try:
        st = os.stat(device)
    except OSError as exc:
        raise DiskError(f"cannot examine {device}: {exc.strerror}") from None
    if not stat.S_ISBLK(st.st_mode):
        return BlockStack(device, ())
    return stack_of(device, f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}", sys)


def stack_of(device: str, majmin: str, sys: Path = Path("/sys")) -> BlockStack:
    """block_stack for the device numbered `majmin`, read from the sysfs at `sys`."""
    try:
        name = (sys / "dev/block" / majmin).resolve(strict=True).name
    except OSError:
        return BlockStack(device, ())
    dm_uuid = (_read(sys / f"class/block/{name}/dm/uuid") or "").strip()
    dm_name = (_read(sys / f"class/block/{name}/dm/name") or name).strip()
    disks = tuple(f"/dev/{d}" for d in sorted(_slaves_disks(name, set(), sys)))
    return BlockStack(device, disks, dm_name if dm_uuid.startswith("LVM-") else None)
