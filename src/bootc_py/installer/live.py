"""`install live`: the installer in the live system of an installer ISO or PXE bundle.

Started by bootc-py-live-install.service when the kernel command line says
`bootc-py.live-install`. It reads what the medium carries (bootc-py/install.json, written by
artifacts/iso.py), picks the kickstart as Anaconda does (`inst.ks=` first, then the one
embedded at build time, then bootc-image-builder's default), picks the disk (the kickstart's,
else the only empty disk; the boot medium is never a target), installs, then reboots or
powers off as the kickstart says. With several empty disks an attended run asks on the
console which to erase (installer/disk_prompt.py); an unattended one (config.toml's
customizations.installer.unattended, a kickstart's `cmdline` or `text --non-interactive`)
refuses instead. A failure says which step and why and leaves the live system up: never a
reboot loop.
"""

from __future__ import annotations

import json
import logging
import shlex
import tempfile
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bootc_py.artifacts import live as media
from bootc_py.disk import devices
from bootc_py.disk.mount import Mount
from bootc_py.errors import UsageError
from bootc_py.installer import disk_prompt, eject
from bootc_py.installer.disk_prompt import Candidate
from bootc_py.run import DEVICE_TIMEOUT, output, run

if TYPE_CHECKING:  # pykickstart is imported only when a kickstart is read
    from bootc_py.kickstart.parse import Setting

log = logging.getLogger(__name__)

MEDIUM = Path("/run/initramfs/live")
# A PXE bundle has no medium: its live root carries the record and the payload itself.
# The layout is the one artifacts/live.py writes.
IN_LIVE_ROOT = Path("/") / media.IN_LIVE_ROOT
RECORD = media.INSTALL_RECORD
CMDLINE = Path("/proc/cmdline")
# bootc-image-builder's default for its installer ISOs: the whole (only) disk, LVM, reboot.
# `text` without --non-interactive: with several empty disks the console asks which, unless
# the medium was built unattended.
DEFAULT_KICKSTART = """\
# bootc-py's built-in default (bootc-image-builder's): the only empty disk, LVM, reboot.
text
zerombr
clearpart --all --initlabel --disklabel=gpt
autopart --noswap --type=lvm
reboot --eject
"""
# The same, for a build configuration that brings its own layout (filesystem/disk).
DEFAULT_KICKSTART_NO_LAYOUT = DEFAULT_KICKSTART.replace("autopart --noswap --type=lvm\n", "")


@dataclass(frozen=True)
class Medium:
    root: Path              # where the medium is mounted
    record: dict[str, Any]  # bootc-py/install.json
    device: str | None      # the block device it is mounted from (never an install target)


@dataclass(frozen=True)
class KickstartSource:
    """Where `inst.ks=` points: a URL or path bootc-py reads directly, or a file on a device
    to mount read-only first."""

    location: str
    device: str | None = None


def read_medium(root: Path = MEDIUM, in_live_root: Path = IN_LIVE_ROOT) -> Medium:
    """The ISO at /run/initramfs/live, else what a PXE bundle's live root carries."""
    if not (root / RECORD).is_file() and (in_live_root / RECORD).is_file():
        return Medium(in_live_root, _record(in_live_root), None)
    if not (root / RECORD).is_file():
        raise UsageError(f"no installer medium at {root} ({RECORD} is missing)",
                         "install live runs in the live system of a bootc-py installer ISO "
                         "or PXE bundle")
    res = run(["findmnt", "-n", "-o", "SOURCE", "--mountpoint", str(root)], check=False,
              capture=True, timeout=DEVICE_TIMEOUT)
    device = res.stdout.strip() or None if res.returncode == 0 else None
    return Medium(root, _record(root), device)


def _record(root: Path) -> dict[str, Any]:
    record = root / RECORD
    try:
        data: dict[str, Any] = json.loads(record.read_text())
    except ValueError as exc:
        raise UsageError(f"{record} is corrupt: {exc}", "rebuild the medium") from exc
    return data


def kickstart_source(cmdline: str, medium: Medium) -> KickstartSource | None:
    """Anaconda's `inst.ks=` forms: http(s)://, tftp://, file:/path, cdrom:/path (the medium),
    hd:DEVICE:/path (LABEL=, UUID= or a device name)."""
    value = next((a.split("=", 1)[1] for a in shlex.split(cmdline)
                  if a.startswith(("inst.ks=", "ks="))), None)
    if value is None:
        return None
    if value.startswith(("http://", "https://", "tftp://")):
        return KickstartSource(value)
    if value.startswith("file:"):
        return KickstartSource(value.removeprefix("file:").removeprefix("//"))
    if value.startswith("cdrom:"):
        return KickstartSource(str(medium.root / value.removeprefix("cdrom:").lstrip("/")))
    if value.startswith("hd:"):
        spec, sep, path = value.removeprefix("hd:").rpartition(":")
        if not sep or not spec or not path.startswith("/"):
            raise UsageError(f"inst.ks={value}: expected hd:DEVICE:/path")
        if not spec.startswith(("LABEL=", "UUID=", "/dev/")):
            spec = f"/dev/{spec}"
        return KickstartSource(path, device=spec)
    raise UsageError(f"inst.ks={value}: unsupported location",
                     "use http(s)://, tftp://, file:/path, cdrom:/path or hd:DEVICE:/path")


def _whole_disk(device: str) -> str | None:
    res = run(["lsblk", "-n", "-d", "-o", "PKNAME", "--paths", device], check=False,
              capture=True, timeout=DEVICE_TIMEOUT)
    parent = res.stdout.strip() if res.returncode == 0 else ""
    return parent or device


def empty_disks(lsblk: dict[str, Any], exclude: set[str]) -> list[str]:
    """Disks with nothing on them (no partition table, filesystem or children), writable and
    not in `exclude` (the boot medium). `lsblk` is `lsblk --json --paths` output."""
    found = []
    for dev in lsblk.get("blockdevices", []):
        if dev.get("type") != "disk" or dev.get("name") in exclude:
            continue
        if dev.get("ro") in (True, "1") or dev.get("children"):
            continue
        if dev.get("fstype") or dev.get("pttype"):
            continue
        found.append(str(dev["name"]))
    return found


def describe(lsblk: dict[str, Any], device: str) -> str:
    """What the prompt shows of a disk: size, model and serial, as lsblk reports them."""
    dev: dict[str, Any] = next(
        (d for d in lsblk.get("blockdevices", []) if d.get("name") == device), {})
    bits = [str(dev.get(k) or "").strip() for k in ("size", "model", "serial")]
    return "  ".join(b for b in bits if b) or "no size reported"


def _list_disks() -> dict[str, Any]:
    # lsblk reads FSTYPE, PTTYPE and SERIAL from udev's database: until udev has probed a
    # disk, a disk with a partition table looks empty (a wipe candidate) and has no serial.
    devices.settle()
    res = run(["lsblk", "--json", "--paths", "-o",
               "NAME,TYPE,RO,FSTYPE,PTTYPE,SIZE,MODEL,SERIAL"],
              capture=True, timeout=DEVICE_TIMEOUT)
    data: dict[str, Any] = json.loads(res.stdout)
    return data


# Asks which of several candidate disks to erase (an attended run); returns the device.
Ask = Callable[[Sequence[Candidate]], str]


def ask_on_console(disks: Sequence[Candidate]) -> str:
    with disk_prompt.console() as (read, write):
        return disk_prompt.ask(disks, read, write)


def choose_disk(named: str | None, medium: Medium, skip: tuple[str, ...] = (),
                ask: Ask | None = None) -> str:
    """The kickstart's disk, else the only empty one, else (`ask`: an attended run) the one
    the console chooses; never the medium nor a disk the kickstart ignores (ignoredisk
    --drives)."""
    medium_disk = _whole_disk(medium.device) if medium.device else None
    exclude = {d for d in (medium.device, medium_disk) if d}
    if named:
        real = str(Path(named).resolve())
        if real in exclude or named in exclude:
            raise UsageError(f"{named} is the installer medium itself",
                             "name another disk in the kickstart (ignoredisk --only-use)")
        return named
    listing = _list_disks()
    disks = empty_disks(listing, exclude | set(skip))
    if not disks:
        raise UsageError("no empty disk to install to",
                         "attach one, or name a disk in the kickstart (ignoredisk --only-use)")
    if len(disks) > 1 and ask is not None:
        return ask([Candidate(d, describe(listing, d)) for d in disks])
    if len(disks) > 1:
        raise UsageError(f"several empty disks ({', '.join(disks)}): which one to erase is "
                         "not guessed in an unattended run", "name one in the kickstart "
                         "(ignoredisk --only-use), given with inst.ks=; an attended run (no "
                         "installer.unattended, no cmdline or text --non-interactive) asks on "
                         "the console")
    return disks[0]


def _kickstart_text(src: KickstartSource | None, medium: Medium,
                    stack: ExitStack) -> tuple[str, str]:
    """(location for messages and %include, text)."""
    from bootc_py.kickstart import source

    if src is not None:
        location = src.location
        if src.device is not None:
            mnt = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bootc-py-ks-")))
            device = output(["blkid", "-t", src.device, "-o", "device"],
                            timeout=DEVICE_TIMEOUT).splitlines()[0] \
                if src.device.startswith(("LABEL=", "UUID=")) else src.device
            stack.enter_context(Mount(device, mnt, options=["ro"]))
            location = str(mnt / src.location.lstrip("/"))
        return location, source.load(location).text
    embedded = medium.record.get("kickstart")
    if embedded:
        path = medium.root / str(embedded)
        return str(path), path.read_text()
    return "built-in default", DEFAULT_KICKSTART


def _payload(medium: Medium) -> tuple[str | None, str]:
    """(source imgref for a kickstart without a payload, target imgref)."""
    target = str(medium.record.get("target-imgref") or medium.record.get("image") or "")
    payload = medium.record.get("payload")
    if payload:
        return f"oci:{medium.root / str(payload)}", target
    return (target or None), target


def unattended(record: dict[str, Any], display: Setting | None) -> bool:
    """Whether nobody is there to ask: the medium was built unattended (config.toml), or the
    kickstart runs in `cmdline` mode or `text --non-interactive` (as Anaconda reads them)."""
    if record.get("unattended"):
        return True
    return display is not None and (display.get("mode") == "cmdline"
                                    or display.get("noninteractive") == "True")


@dataclass(frozen=True)
class LiveResult:
    disk: str
    summary: str
    finish: str | None
    eject: str | None = None  # the CD drive to eject once the live system is down


def install_live(cmdline: str | None = None, medium_root: Path = MEDIUM) -> LiveResult:
    from bootc_py.kickstart import apply, parse, translate

    medium = read_medium(medium_root)
    cmdline = cmdline if cmdline is not None else CMDLINE.read_text()
    with ExitStack() as stack:
        where, text = _kickstart_text(kickstart_source(cmdline, medium), medium, stack)
        log.info("kickstart: %s", where)
        doc = parse.parse(text, source=where, base_dir=str(Path(where).parent)
                          if not where.startswith(("http", "tftp", "built-in")) else None,
                          version=parse.DEFAULT_VERSION)
        source_imgref, target = _payload(medium)
        has_payload = bool(doc.payloads)
        if not has_payload and source_imgref is None:
            raise UsageError("this medium carries no image and the kickstart names none",
                             "add `bootc --source-imgref IMGREF` to the kickstart")
        opts = translate.TranslateOptions(
            source_imgref=None if has_payload else source_imgref,
            target_imgref=None if has_payload else target)
        plan = translate.translate(doc, opts)
        kargs = tuple(str(k) for k in medium.record.get("kargs") or ())
        if kargs:
            plan = replace(plan, options=replace(plan.options,
                                                 kargs=(*plan.options.kargs, *kargs)))
        disk = choose_disk(plan.target.disk, medium, plan.target.skip,
                           ask=None if unattended(medium.record, doc.setting("display"))
                           else ask_on_console)
        log.info("installing %s onto %s", plan.options.source_imgref, disk)
        done = apply.install(plan, Path(disk), via_loopback=False)
    for warning in (*plan.warnings, *done.warnings):
        log.warning("%s", warning)
    return LiveResult(disk, done.summary, plan.finish,
                      eject_device(medium) if plan.eject and plan.finish else None)


def eject_device(medium: Medium, is_cdrom: Callable[[str], bool] = eject.is_cdrom
                 ) -> str | None:
    """The drive `--eject` opens: the medium's, if it is a CD (a USB stick has no tray, a
    PXE boot no medium; Anaconda ejects only CDs too)."""
    if medium.device is None:
        log.info("--eject: the live system came over the network: nothing to eject")
        return None
    # A CD is mounted whole (/dev/sr0); a partition is never a drive with a tray.
    if not is_cdrom(medium.device):
        log.info("--eject: the installer medium %s is not a CD: nothing to eject",
                 medium.device)
        return None
    return medium.device


def finish(action: str | None, eject_drive: str | None = None) -> None:
    """What the kickstart asked for at the end (reboot, poweroff, halt, shutdown), with the
    CD ejected at the very end of the shutdown if `eject_drive`."""
    if eject_drive and action:
        try:
            eject.arm(eject_drive)
            log.info("--eject: systemd-shutdown will eject %s", eject_drive)
        except OSError as exc:  # the install is done: a tray that stays shut is no failure
            log.warning("--eject: cannot arm the eject of %s: %s", eject_drive, exc)
    if action == "reboot":
        run(["systemctl", "--no-block", "reboot"])
    elif action in ("poweroff", "shutdown"):
        run(["systemctl", "--no-block", "poweroff"])
    elif action == "halt":
        run(["systemctl", "--no-block", "halt"])
