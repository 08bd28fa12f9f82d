"""KickstartDoc -> KickstartPlan: the same InstallOptions the CLI builds, a disk LayoutRequest,
the system configuration for the new deployment's /etc, and the scripts. Pure.

Every problem is collected (with its file and line) and raised at once as a KickstartError, so
`kickstart validate` can print them all.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from bootc_py.disk.layout import (
    BtrfsVolumeRequest,
    LayoutPlan,
    LayoutRequest,
    LogicalVolumeRequest,
    PartRequest,
    SubvolumeRequest,
    VolumeGroupRequest,
)
from bootc_py.disk.model import GiB, MiB
from bootc_py.disk.plan import BIOS_BOOT_SIZE, BOOT_SIZE, ESP_SIZE
from bootc_py.errors import BootcPyError, ImageRefError, UsageError
from bootc_py.image.ref import parse_imgref
from bootc_py.image.source import PullOptions
from bootc_py.installer.config import MAX_BOOTLOADER_TIMEOUT
from bootc_py.installer.kargs import problem_of as karg_problem
from bootc_py.installer.plan import InstallOptions
from bootc_py.kickstart.parse import KickstartDoc, Part, Problem, Where

CONTAINERFILE = "install packages in the Containerfile"
NOT_WITH_IMAGE = "is not supported with a bootable container image"

# Commands and sections with a meaning here (parse.py reads them; this module translates them).
SUPPORTED = frozenset({
    "bootc", "ostreecontainer", "clearpart", "zerombr", "ignoredisk", "autopart", "reqpart",
    "part", "partition", "volgroup", "logvol", "btrfs", "rootpw", "user", "group", "sshkey",
    "network", "timezone", "keyboard", "lang", "services", "bootloader", "selinux",
    "firewall", "reboot", "poweroff", "halt", "shutdown", "text", "cmdline", "graphical",
    "%pre", "%post", "%onerror", "skipx", "eula", "firstboot",
})
# Accepted and ignored: they only steer Anaconda's own UI.
NO_EFFECT = frozenset({"skipx", "eula", "firstboot", "text", "cmdline", "graphical"})
# Commands a bootable image makes meaningless: always an error, with what to do instead.
REJECTED = {
    "url": f"url {NOT_WITH_IMAGE}: the image is the payload (use bootc --source-imgref)",
    "repo": f"repo {NOT_WITH_IMAGE}: {CONTAINERFILE}",
    "liveimg": f"liveimg {NOT_WITH_IMAGE}: use bootc --source-imgref",
    "ostreesetup": f"ostreesetup {NOT_WITH_IMAGE}: use bootc or ostreecontainer",
    "%packages": f"%packages {NOT_WITH_IMAGE}: {CONTAINERFILE}",
    "module": f"module {NOT_WITH_IMAGE}: {CONTAINERFILE}",
    "cdrom": f"cdrom {NOT_WITH_IMAGE}: the image is the payload (use bootc --source-imgref)",
    "harddrive": f"harddrive {NOT_WITH_IMAGE}: use bootc --source-imgref oci:PATH",
    "nfs": f"nfs {NOT_WITH_IMAGE}: use bootc --source-imgref",
}
FSTYPES = {"xfs": "xfs", "ext4": "ext4", "btrfs": "btrfs", "vfat": "vfat", "efi": "vfat",
           "swap": "swap"}
# Where a bootable image keeps these (they are symlinks into /var).
VAR_LINKS = {"/home": "/var/home", "/opt": "/var/opt", "/srv": "/var/srv",
             "/root": "/var/roothome", "/mnt": "/var/mnt", "/usr/local": "/var/usrlocal"}
AUTO_VG = "bootc"
AUTO_BTRFS = "bootc"
DEFAULT_SWAP = 2 * GiB


class KickstartError(UsageError):
    """A kickstart bootc-py cannot install as written. `problems`: one line each."""

    def __init__(self, problems: tuple[Problem, ...], warnings: tuple[str, ...] = ()) -> None:
        first = str(problems[0])
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(first + more, "run 'bootc-py kickstart validate' to list every problem")
        self.problems = problems
        self.warnings = warnings


@dataclass(frozen=True)
class TranslateOptions:
    pull: PullOptions = field(default_factory=PullOptions)
    warn_unsupported: bool = False
    bios: bool = True             # plan a BIOS boot partition where reqpart/autopart ask
    uefi: bool = True
    generic_image: bool = True
    disk_size: int | None = None  # for --via-loopback when the file must be created
    # `build IMGREF --kickstart KS`: the image is build's; the kickstart may omit the payload.
    source_imgref: str | None = None
    target_imgref: str | None = None


@dataclass(frozen=True)
class Account:
    name: str
    password: str | None = None   # plaintext (hashed at install) or crypted
    crypted: bool = False
    lock: bool = False
    groups: tuple[str, ...] = ()
    uid: int | None = None
    gid: int | None = None
    homedir: str | None = None
    shell: str | None = None
    gecos: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in vars(self).items() if v not in (None, (), False)}
        if self.password is not None:
            data["password"] = "<crypted>" if self.crypted else "<plaintext, hashed at install>"
        return data


@dataclass(frozen=True)
class NetworkFile:
    """A systemd-networkd .network file for /etc/systemd/network/."""

    name: str
    text: str


@dataclass(frozen=True)
class SystemConfig:
    """What lands in the new deployment's /etc (kept across upgrades by the /etc merge)."""

    root: Account | None = None
    root_allow_ssh: bool = False
    users: tuple[Account, ...] = ()
    groups: tuple[tuple[str, int | None], ...] = ()
    ssh_keys: tuple[tuple[str, str], ...] = ()  # (user, key line)
    hostname: str | None = None
    network: tuple[NetworkFile, ...] = ()
    timezone: str | None = None
    keymap: str | None = None
    lang: str | None = None
    services_enabled: tuple[str, ...] = ()
    services_disabled: tuple[str, ...] = ()
    bootloader_timeout: int | None = None
    selinux: str | None = None
    firewall: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "root": self.root.to_dict() if self.root else None,
            "root_allow_ssh": self.root_allow_ssh,
            "users": [u.to_dict() for u in self.users],
            "groups": [{"name": n, "gid": g} for n, g in self.groups],
            "ssh_keys": [{"user": u, "key": k} for u, k in self.ssh_keys],
            "hostname": self.hostname,
            "network": {f.name: f.text for f in self.network},
            "timezone": self.timezone, "keymap": self.keymap, "lang": self.lang,
            "services_enabled": list(self.services_enabled),
            "services_disabled": list(self.services_disabled),
            "bootloader_timeout": self.bootloader_timeout,
            "selinux": self.selinux, "firewall": self.firewall,
        }


@dataclass(frozen=True)
class ScriptPlan:
    kind: str                   # pre, post, onerror
    where: str                  # file:line
    interpreter: str
    chroot: bool
    erroronfail: bool
    log: str | None
    body: str

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


@dataclass(frozen=True)
class DiskTarget:
    """Which disk the kickstart selects (None: the one disk the caller names) and whether it
    may be erased. `listed`: the partitions `clearpart --list` names; the disk is erased only
    if it holds no other (bootc-py writes a whole new partition table)."""

    disk: str | None
    wipe: bool
    skip: tuple[str, ...] = ()
    listed: tuple[str, ...] = ()

    @property
    def listed_numbers(self) -> frozenset[int]:
        return frozenset(partition_number(p) for p in self.listed)


@dataclass(frozen=True)
class KickstartPlan:
    source: str
    options: InstallOptions
    target: DiskTarget
    layout: LayoutRequest
    system: SystemConfig
    scripts: tuple[ScriptPlan, ...]
    finish: str | None = None   # reboot, poweroff, halt (the caller acts on it)
    eject: bool = False
    warnings: tuple[str, ...] = ()

    def scripts_of(self, kind: str) -> tuple[ScriptPlan, ...]:
        return tuple(s for s in self.scripts if s.kind == kind)

    def to_dict(self) -> dict[str, Any]:
        o = self.options
        return {
            "source": self.source,
            "install": {"source_imgref": o.source_imgref, "target_imgref": o.target_imgref,
                        "stateroot": o.stateroot, "filesystem": o.filesystem,
                        "bootloader": o.bootloader, "generic_image": o.generic_image,
                        "kargs": list(o.kargs), "wipe": o.wipe},
            "disk": {"disk": self.target.disk, "wipe": self.target.wipe,
                     "listed": list(self.target.listed),
                     "skip": list(self.target.skip)},
            "layout": self.layout.to_dict(),
            "system": self.system.to_dict(),
            "scripts": [s.to_dict() for s in self.scripts],
            "finish": self.finish, "eject": self.eject,
            "warnings": list(self.warnings),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def render(self, layout: LayoutPlan | None = None) -> str:
        """The whole plan, as --dry-run and `kickstart validate` print it."""
        o, s = self.options, self.system
        lines = [f"Kickstart:    {self.source}",
                 f"Image:        {o.source_imgref}",
                 f"Updates from: {o.target_imgref or o.source_imgref}",
                 f"Stateroot:    {o.stateroot}",
                 f"Bootloader:   {o.bootloader}"
                 + (f" (timeout {s.bootloader_timeout}s)" if s.bootloader_timeout is not None
                    else ""),
                 f"Kernel args:  {' '.join(['root=UUID=<root>', 'rw', *o.kargs])}",
                 f"Disk:         {self.target.disk or '(the one given on the command line)'}"
                 + (", must be empty" if not self.target.wipe
                    else f", erased if it holds only {', '.join(self.target.listed)}"
                    if self.target.listed else ", erased")]
        text = "\n".join(lines) + "\n"
        if layout is not None:
            text += layout.render()
        else:
            text += "Layout (sizes resolved against the disk at install):\n"
            for p in self.layout.parts:
                grow = " grow" + (f" to {p.max_size // MiB} MiB" if p.max_size else "") \
                    if p.grow else ""
                text += (f"  part {p.mountpoint or p.ref or p.kind:<10} {p.kind:<8} "
                         f"{p.size // MiB} MiB{grow} {p.fstype or ''}".rstrip() + "\n")
            for vg in self.layout.volume_groups:
                text += f"  volgroup {vg.name} on {', '.join(vg.pvs)}\n"
            for lv in self.layout.logical_volumes:
                size = f"{lv.percent}%" if lv.percent else f"{lv.size // MiB} MiB"
                text += (f"  logvol {lv.mountpoint:<10} {lv.vg}/{lv.name} {size}"
                         f"{' grow' if lv.grow else ''} {lv.fstype}\n")
            for b in self.layout.btrfs_volumes:
                text += f"  btrfs {b.name} on {', '.join(b.members)}\n"
            for sv in self.layout.subvolumes:
                text += f"  subvolume {sv.mountpoint:<10} {sv.volume}/{sv.name}\n"
        text += "System:\n"
        for key, value in (
            ("root", _account_text(s.root) + (", ssh password login allowed"
                                              if s.root_allow_ssh else "") if s.root else None),
            *((f"user {u.name}", _account_text(u)) for u in s.users),
            *((f"group {n}", f"gid {g}" if g is not None else "") for n, g in s.groups),
            *((f"ssh key {u}", k) for u, k in s.ssh_keys),
            ("hostname", s.hostname), ("timezone", s.timezone), ("keymap", s.keymap),
            ("lang", s.lang),
            ("enable", " ".join(s.services_enabled)), ("disable", " ".join(s.services_disabled)),
            ("selinux", s.selinux), ("firewall", s.firewall),
        ):
            if value is not None and (value or key.startswith("group")):
                text += f"  {key}: {value}\n"
        for f in s.network:
            text += f"  /etc/systemd/network/{f.name}:\n"
            text += "".join(f"    {line}\n" for line in f.text.splitlines())
        for sc in self.scripts:
            flags = [sc.interpreter, "chroot" if sc.chroot else "nochroot"]
            if sc.erroronfail:
                flags.append("erroronfail")
            if sc.log:
                flags.append(f"log {sc.log}")
            text += f"%{sc.kind} ({sc.where}; {', '.join(flags)}):\n"
            text += "".join(f"    {line}\n" for line in sc.body.splitlines())
        if self.finish:
            text += f"Then: {self.finish}{' (eject)' if self.eject else ''}\n"
        for w in self.warnings:
            text += f"warning: {w}\n"
        return text


def _account_text(a: Account) -> str:
    bits = []
    if a.uid is not None:
        bits.append(f"uid {a.uid}")
    if a.gid is not None:
        bits.append(f"gid {a.gid}")
    if a.groups:
        bits.append(f"groups {','.join(a.groups)}")
    if a.homedir:
        bits.append(f"home {a.homedir}")
    if a.shell:
        bits.append(f"shell {a.shell}")
    if a.gecos:
        bits.append(f"gecos {a.gecos!r}")
    if a.password is not None:
        bits.append("crypted password" if a.crypted else "password (hashed at install)")
    if a.lock:
        bits.append("locked")
    return ", ".join(bits) or "defaults"


class _Problems:
    def __init__(self) -> None:
        self.items: list[Problem] = []
        self.warnings: list[str] = []

    def add(self, where: Where, message: str) -> None:
        self.items.append(Problem(where, message))

    def warn(self, where: Where, message: str) -> None:
        self.warnings.append(f"{where}: {message}")


def translate(doc: KickstartDoc, opts: TranslateOptions | None = None) -> KickstartPlan:
    """The install a kickstart asks for, or a KickstartError listing every problem."""
    opts = opts or TranslateOptions()
    pr = _Problems()
    pr.items.extend(doc.problems)
    pr.warnings.extend(doc.warnings)
    _check_commands(doc, opts, pr)
    install = _payload(doc, opts, pr)
    target = _target(doc, pr)
    layout, layout_kargs, root_fs = _layout(doc, opts, pr)
    system, kargs, bootloader = _system(doc, pr)
    scripts = tuple(ScriptPlan(s.kind, str(s.where), s.interpreter, s.chroot, s.erroronfail,
                               s.log, s.body) for s in doc.scripts)
    finish = doc.setting("finish")
    if pr.items or install is None:
        if install is None and not pr.items:  # pragma: no cover (a payload problem was added)
            pr.add(Where(doc.source, 0), "no payload")
        raise KickstartError(tuple(sorted(pr.items, key=_order)), tuple(pr.warnings))
    try:
        options = InstallOptions(
            pull=opts.pull, source_imgref=install[0], target_imgref=install[1],
            stateroot=install[2], filesystem=root_fs,
            bootloader=install[3] or bootloader or "grub", generic_image=opts.generic_image,
            kargs=(*layout_kargs, *kargs), wipe=target.wipe, disk_size=opts.disk_size)
    except UsageError as exc:
        raise KickstartError((Problem(doc.payloads[0].where, exc.message),)) from exc
    return KickstartPlan(
        source=doc.source, options=options, target=target, layout=layout, system=system,
        scripts=scripts, finish=finish.get("action") if finish else None,
        eject=bool(finish and finish.get("eject")), warnings=tuple(pr.warnings))


def _order(p: Problem) -> tuple[str, int, str]:
    return (p.where.file, p.where.line, p.message)


def _check_commands(doc: KickstartDoc, opts: TranslateOptions, pr: _Problems) -> None:
    unknown = {p.where for p in doc.problems if p.message.startswith("Unknown command")}
    for seen in doc.seen:
        if seen.where in unknown:
            continue  # pykickstart's own message says it
        if seen.name in REJECTED:
            pr.add(seen.where, REJECTED[seen.name])
        elif seen.name in SUPPORTED:
            continue
        elif opts.warn_unsupported:
            pr.warn(seen.where, f"{seen.name} is not supported by bootc-py: skipped")
        else:
            pr.add(seen.where, f"{seen.name} is not supported by bootc-py "
                   "(--warn-unsupported skips it)")


def _payload(doc: KickstartDoc, opts: TranslateOptions, pr: _Problems
             ) -> tuple[str, str | None, str, str | None] | None:
    """(source imgref, target imgref, stateroot, bootloader) of the one payload."""
    if opts.source_imgref is not None:
        found = _kickstart_payload(doc, opts, pr) if doc.payloads else None
        if found is not None and found[0] != opts.source_imgref:
            pr.warn(doc.payloads[0].where, f"{doc.payloads[0].kind}: the image is "
                    f"{opts.source_imgref} (given on the command line), not {found[0]}")
        return (opts.source_imgref, opts.target_imgref or (found[1] if found else None),
                found[2] if found else "default", found[3] if found else None)
    return _kickstart_payload(doc, opts, pr)


def _kickstart_payload(doc: KickstartDoc, opts: TranslateOptions, pr: _Problems
                       ) -> tuple[str, str | None, str, str | None] | None:
    if not doc.payloads:
        if not any(s.name in ("bootc", "ostreecontainer") for s in doc.seen):
            pr.add(Where(doc.source, 0), "no payload: add `bootc --source-imgref IMGREF` "
                   "(or ostreecontainer --url)")
        return None
    if len(doc.payloads) > 1:
        for p in doc.payloads[1:]:
            pr.add(p.where, "only one of bootc and ostreecontainer may be given")
    p = doc.payloads[0]
    if p.kind == "bootc":
        source = p.source
        target = p.target if p.target and p.target != p.source else None
        if target and not any(target.startswith(t) for t in
                              ("registry:", "docker://", "oci:", "oci-archive:",
                               "containers-storage:")):
            target = f"registry:{target}"  # bootc's --target-imgref has no transport
        if p.composefs:
            pr.add(p.where, "bootc --composefs is not supported by bootc-py (ostree only)")
        if p.bootloader and p.bootloader not in ("grub", "systemd", "none"):
            pr.add(p.where, f"bootc --bootloader {p.bootloader}: choose grub, systemd or none")
    else:
        transport = p.transport or "registry"
        source = f"{transport}:{p.source}"
        target = None
        if p.remote:
            pr.warn(p.where, f"ostreecontainer --remote {p.remote}: ostree remotes are not "
                    "used; updates follow the image reference")
        if p.verify_signatures:
            pr.warn(p.where, "ostreecontainer: image signatures are not verified by bootc-py "
                    "(digests are); add --no-signature-verification to silence this")
    for ref in (source, target):
        if ref is None:
            continue
        try:
            parse_imgref(ref)
        except ImageRefError as exc:
            pr.add(p.where, exc.message)
    return source, target, p.stateroot, p.bootloader


def _disk_name(name: str) -> str:
    """Anaconda's names (sda, nvme0n1, disk/by-id/...) as device paths."""
    name = name.strip()
    return name if name.startswith("/dev/") else f"/dev/{name}"


# A partition's name is its disk's and a number: vda1, nvme0n1p2, mmcblk0p1, by-id/...-part2.
_PARTITION = re.compile(r"(?P<disk>.*?)(?:-part|(?<=\d)p|(?<=\D))(?P<number>\d+)")


# Whole disks whose names end in a digit.
_WHOLE = re.compile(r"/dev/(nvme\d+n\d+|mmcblk\d+|loop\d+|md\d+)")


def _split_partition(name: str) -> tuple[str, int]:
    """(its disk, its number); (the name, 0) for a name that is not a partition's."""
    path = _disk_name(name)
    m = None if _WHOLE.fullmatch(path) else _PARTITION.fullmatch(path)
    return (m.group("disk"), int(m.group("number"))) if m else (path, 0)


def disk_of_partition(name: str) -> str:
    return _split_partition(name)[0]


def partition_number(name: str) -> int:
    return _split_partition(name)[1]


def _target(doc: KickstartDoc, pr: _Problems) -> DiskTarget:
    named: list[tuple[str, Where]] = []
    if doc.ignoredisk_only:
        w = doc.first("ignoredisk")
        named += [(_disk_name(d), w.where if w else Where(doc.source, 0))
                  for d in doc.ignoredisk_only]
    cp = doc.clearpart
    if cp is not None:
        named += [(_disk_name(d), cp.where) for d in cp.drives]
        named += [(disk_of_partition(d), cp.where) for d in cp.devices]
    named += [(_disk_name(p.ondisk), p.where) for p in doc.parts if p.ondisk]
    disks = sorted({d for d, _ in named})
    if len(disks) > 1:
        where = min((w for _, w in named), key=lambda w: w.line)
        pr.add(where, f"the kickstart selects several disks ({', '.join(disks)}): bootc-py "
               "installs onto one disk; name one with ignoredisk --only-use")
    skip = tuple(_disk_name(d) for d in doc.ignoredisk_skip)
    disk = disks[0] if len(disks) == 1 else None
    if disk and disk in skip:
        ig = doc.first("ignoredisk")
        pr.add(ig.where if ig else Where(doc.source, 0), f"{disk} is both selected and ignored")
    wipe = False
    if cp is not None:
        if cp.mode == "linux":
            pr.add(cp.where, "clearpart --linux keeps other partitions, but bootc-py writes a "
                   "whole new partition table: use clearpart --all (with --drives)")
        elif cp.mode in ("all", "list"):
            wipe = True
        if cp.disklabel and cp.disklabel != "gpt":
            pr.add(cp.where, f"clearpart --disklabel {cp.disklabel}: bootc-py writes GPT only")
    listed = tuple(_disk_name(d) for d in cp.devices) if cp and cp.mode == "list" else ()
    for name in listed:
        if not partition_number(name):
            pr.add(cp.where if cp else Where(doc.source, 0),
                   f"clearpart --list {name}: not a partition name (vda1, nvme0n1p2, ...)")
    return DiskTarget(disk, wipe, skip, listed)


def _mountpoint_problem(mp: str) -> str | None:
    if mp in ("/", "/boot", "/boot/efi", "/var", "swap", "biosboot", "none"):
        return None
    if mp.startswith("/var/") or mp.startswith(("pv.", "btrfs.")):
        return None
    if mp in VAR_LINKS:
        return (f"mount point {mp} {NOT_WITH_IMAGE}: it is a link into /var there "
                f"(use {VAR_LINKS[mp]})")
    if mp.startswith("/"):
        return (f"mount point {mp} {NOT_WITH_IMAGE}: only /, /boot, /boot/efi and /var "
                "(and below) can be filesystems of their own")
    return f"unknown mount point {mp}"


def _fstype(raw: str | None, default: str, where: Where, pr: _Problems) -> str:
    if raw is None:
        return default
    fs = FSTYPES.get(raw)
    if fs is None:
        pr.add(where, f"filesystem {raw} is not supported: choose one of "
               f"{', '.join(sorted(set(FSTYPES.values())))}")
        return default
    return fs


def _required(opts: TranslateOptions, add_boot: bool) -> list[PartRequest]:
    """What reqpart adds: the partitions the boot firmware needs (both for a generic image)."""
    out = []
    if opts.bios:
        out.append(PartRequest("biosboot", BIOS_BOOT_SIZE))
    if opts.uefi:
        out.append(PartRequest("esp", ESP_SIZE, mountpoint="/boot/efi", fstype="vfat"))
    if add_boot:
        out.append(PartRequest("boot", BOOT_SIZE, mountpoint="/boot", fstype="ext4"))
    return out


def _part_request(p: Part, pr: _Problems) -> PartRequest | None:
    mp = p.mountpoint
    problem = _mountpoint_problem(mp)
    if problem:
        pr.add(p.where, problem)
        return None
    for flag, on in (("--encrypted", p.encrypted), ("--onpart", p.onpart)):
        if on:
            pr.add(p.where, f"part {flag} is not supported by bootc-py")
    size = p.size_mib * MiB if p.size_mib else None
    maxsize = p.maxsize_mib * MiB if p.maxsize_mib else None
    if mp == "biosboot":
        return PartRequest("biosboot", size or BIOS_BOOT_SIZE)
    if mp == "/boot/efi":
        return PartRequest("esp", size or ESP_SIZE, p.grow, maxsize, mp,
                           _fstype(p.fstype, "vfat", p.where, pr), p.label or "EFI-SYSTEM",
                           p.fsoptions)
    if mp == "/boot":
        return PartRequest("boot", size or BOOT_SIZE, p.grow, maxsize, mp,
                           _fstype(p.fstype, "ext4", p.where, pr), p.label, p.fsoptions)
    if mp.startswith("pv."):
        return PartRequest("pv", size or MiB, p.grow or not size, maxsize, ref=mp)
    if mp.startswith("btrfs."):
        return PartRequest("btrfs", size or MiB, p.grow or not size, maxsize, ref=mp)
    if mp == "swap" or p.fstype == "swap":
        if p.recommended and not size:
            pr.warn(p.where, f"swap --recommended: {DEFAULT_SWAP // GiB} GiB (the memory "
                    "size is not known when planning)")
        if not size and not p.grow and not p.recommended:
            pr.add(p.where, "part swap needs --size, --grow or --recommended")
        return PartRequest("swap", size or DEFAULT_SWAP, p.grow, maxsize, None, "swap", p.label,
                           p.fsoptions)
    if not size and not p.grow:
        pr.add(p.where, f"part {mp} needs --size or --grow")
    fstype = _fstype(p.fstype, "xfs", p.where, pr)
    if fstype in ("vfat", "swap"):
        pr.add(p.where, f"part {mp}: {fstype} cannot hold {mp}")
    return PartRequest("fs", size or MiB, p.grow, maxsize, mp, fstype, p.label, p.fsoptions)


def _autopart(doc: KickstartDoc, opts: TranslateOptions, pr: _Problems) -> LayoutRequest:
    ap = doc.autopart
    assert ap is not None
    if ap.encrypted:
        pr.add(ap.where, "autopart --encrypted is not supported by bootc-py")
    if ap.type not in ("plain", "lvm", "btrfs"):
        pr.add(ap.where, f"autopart --type {ap.type} is not supported: choose plain, lvm "
               "or btrfs")
    if ap.noboot and ap.type != "plain":
        pr.add(ap.where, f"autopart --noboot with --type {ap.type}: the root cannot hold "
               "/boot; drop --noboot")
    if not ap.noswap:
        pr.warn(ap.where, "autopart: no swap is created (the memory size is not known when "
                "planning); add part swap --size N if you want one")
    parts = _required(opts, add_boot=not ap.noboot)
    fs = _fstype(ap.fstype, "btrfs" if ap.type == "btrfs" else "xfs", ap.where, pr)
    if ap.type == "lvm":
        parts.append(PartRequest("pv", MiB, True, ref="pv.autopart"))
        return LayoutRequest(tuple(parts), (VolumeGroupRequest(AUTO_VG, ("pv.autopart",)),),
                             (LogicalVolumeRequest(AUTO_VG, "root", MiB, "/", fs, grow=True),))
    if ap.type == "btrfs":
        parts.append(PartRequest("btrfs", MiB, True, ref="btrfs.autopart"))
        return LayoutRequest(tuple(parts), btrfs_volumes=(
            BtrfsVolumeRequest(AUTO_BTRFS, ("btrfs.autopart",)),),
            subvolumes=(SubvolumeRequest(AUTO_BTRFS, "root", "/"),))
    parts.append(PartRequest("fs", MiB, True, mountpoint="/", fstype=fs))
    return LayoutRequest(tuple(parts))


def _layout(doc: KickstartDoc, opts: TranslateOptions, pr: _Problems
            ) -> tuple[LayoutRequest, tuple[str, ...], str | None]:
    """(layout request, kargs the root needs, root filesystem type)."""
    custom = doc.parts or doc.logvols or doc.volgroups or doc.btrfs
    if doc.autopart is not None:
        if custom or doc.reqpart:
            pr.add(doc.autopart.where, "autopart cannot be combined with part, reqpart, "
                   "volgroup, logvol or btrfs")
        request = _autopart(doc, opts, pr)
    elif custom:
        request = _custom(doc, opts, pr)
    else:
        # No storage commands: bootc-py's own layout, as `install to-disk` makes it.
        request = LayoutRequest((*_required(opts, add_boot=True),
                                 PartRequest("fs", MiB, True, mountpoint="/", fstype="xfs")))
    return request, _root_kargs(request), _root_fs(request)


def _custom(doc: KickstartDoc, opts: TranslateOptions, pr: _Problems) -> LayoutRequest:
    parts: list[PartRequest] = []
    if doc.reqpart:
        parts += _required(opts, add_boot=doc.reqpart_add_boot)
    seen_mp: dict[str, Where] = {}

    def claim(mp: str | None, where: Where) -> None:
        if mp is None or mp in ("swap", "none"):
            return
        if mp in seen_mp:
            pr.add(where, f"mount point {mp} is already used at line {seen_mp[mp].line}")
        seen_mp[mp] = where

    for made in parts:
        claim(made.mountpoint, doc.reqpart or Where(doc.source, 0))
    refs: dict[str, Where] = {}
    for kp in doc.parts:
        req = _part_request(kp, pr)
        if req is None:
            continue
        if req.kind in ("biosboot", "esp") and any(x.kind == req.kind for x in parts):
            pr.add(kp.where, f"part {kp.mountpoint} is already created by reqpart")
            continue
        claim(req.mountpoint, kp.where)
        if req.ref:
            refs[req.ref] = kp.where
        parts.append(req)
    # Firmware partitions first, then /boot, then the rest in kickstart order (as Anaconda).
    rank = {"biosboot": 0, "esp": 1, "boot": 2}
    parts.sort(key=lambda x: rank.get(x.kind, 3))

    vgs = []
    used: set[str] = set()
    for vg in doc.volgroups:
        if vg.useexisting:
            pr.add(vg.where, "volgroup --useexisting is not supported by bootc-py")
        for pv in vg.pvs:
            if pv not in refs or not pv.startswith("pv."):
                pr.add(vg.where, f"volgroup {vg.name}: no `part {pv}` defines {pv}")
            used.add(pv)
        vgs.append(VolumeGroupRequest(vg.name, vg.pvs, (vg.pesize_kib or 4096) * 1024))
    for ref, where in refs.items():
        if ref.startswith("pv.") and ref not in used:
            pr.add(where, f"{ref} belongs to no volgroup")
    lvs = []
    names = {v.name for v in vgs}
    for lv in doc.logvols:
        if lv.vgname not in names:
            pr.add(lv.where, f"logvol {lv.mountpoint}: no volgroup {lv.vgname}")
        for flag, on in (("--thin", lv.thin), ("--encrypted", lv.encrypted),
                         ("--useexisting", lv.useexisting)):
            if on:
                pr.add(lv.where, f"logvol {flag} is not supported by bootc-py")
        problem = _mountpoint_problem(lv.mountpoint)
        if problem or lv.mountpoint in ("biosboot", "/boot/efi", "/boot", "none") or \
                lv.mountpoint.startswith(("pv.", "btrfs.")):
            pr.add(lv.where, problem or f"logvol {lv.mountpoint}: must be on a partition")
            continue
        if not lv.size_mib and not lv.grow and not lv.percent:
            pr.add(lv.where, f"logvol {lv.mountpoint} needs --size, --grow or --percent")
        claim(lv.mountpoint, lv.where)
        fs = _fstype(lv.fstype, "swap" if lv.mountpoint == "swap" else "xfs", lv.where, pr)
        lvs.append(LogicalVolumeRequest(lv.vgname, lv.name, (lv.size_mib or 1) * MiB,
                                        lv.mountpoint, fs, lv.grow,
                                        lv.maxsize_mib * MiB if lv.maxsize_mib else None,
                                        lv.percent, lv.label, lv.fsoptions))
    volumes: list[BtrfsVolumeRequest] = []
    subvols: list[SubvolumeRequest] = []
    volume_names: set[str] = set()
    for b in doc.btrfs:
        if not b.subvol:
            for member in b.devices:
                if member not in refs or not member.startswith("btrfs."):
                    pr.add(b.where, f"btrfs: no `part {member}` defines {member}")
            name = b.label or b.name or f"btrfs{len(volumes) + 1}"
            volume_names.add(name)
            mp = None if b.mountpoint == "none" else b.mountpoint
            claim(mp, b.where)
            volumes.append(BtrfsVolumeRequest(name, b.devices, mp, b.data_level,
                                              b.metadata_level))
    for b in doc.btrfs:
        if b.subvol:
            parent = (b.devices[0] if b.devices else "").removeprefix("LABEL=")
            if parent not in volume_names:
                pr.add(b.where, f"btrfs --subvol {b.mountpoint}: no btrfs volume {parent!r}")
            if not b.name:
                pr.add(b.where, "btrfs --subvol needs --name")
            problem = _mountpoint_problem(b.mountpoint)
            if problem or b.mountpoint in ("swap", "biosboot", "/boot", "/boot/efi", "none"):
                pr.add(b.where, problem or f"btrfs --subvol {b.mountpoint}: must be a "
                       "partition (part)")
                continue
            claim(b.mountpoint, b.where)
            subvols.append(SubvolumeRequest(parent, b.name or "", b.mountpoint))
    request = LayoutRequest(tuple(parts), tuple(vgs), tuple(lvs), tuple(volumes),
                            tuple(subvols))
    anchor = doc.parts[0].where if doc.parts else Where(doc.source, 0)
    if "/" not in seen_mp:
        pr.add(anchor, "the layout has no / (add part /, logvol / or btrfs / --subvol)")
    elif request.root_kind() != "part" and "/boot" not in seen_mp:
        pr.add(seen_mp["/"], f"a root on {request.root_kind()} needs a separate /boot: add "
               "part /boot --size 1024 (or reqpart --add-boot)")
    if opts.bios and not any(p.kind == "biosboot" for p in parts) and \
            not (opts.uefi and any(p.kind == "esp" for p in parts)):
        pr.add(anchor, "no partition to boot from: add reqpart (or part biosboot and "
               "part /boot/efi)")
    return request


def _root_kargs(request: LayoutRequest) -> tuple[str, ...]:
    root_lv = next((lv for lv in request.logical_volumes if lv.mountpoint == "/"), None)
    if root_lv is not None:  # dracut activates only what it is told to
        return (f"rd.lvm.lv={root_lv.vg}/{root_lv.name}",)
    sub = next((s for s in request.subvolumes if s.mountpoint == "/"), None)
    if sub is not None:
        return (f"rootflags=subvol={sub.name}",)
    return ()


def _root_fs(request: LayoutRequest) -> str | None:
    kind = request.root_kind()
    if kind == "btrfs":
        return "btrfs"
    if kind == "lvm":
        return next(lv.fstype for lv in request.logical_volumes if lv.mountpoint == "/")
    return next((p.fstype for p in request.parts if p.mountpoint == "/"), None)


def _prefix(netmask: str) -> int:
    return ipaddress.IPv4Network(f"0.0.0.0/{netmask}").prefixlen


def _system(doc: KickstartDoc, pr: _Problems
            ) -> tuple[SystemConfig, tuple[str, ...], str | None]:
    """(system config, kargs from bootloader --append, bootloader from bootloader options)."""
    root = None
    allow_ssh = False
    if doc.rootpw is not None:
        rp = doc.rootpw
        if rp.password is None and not rp.lock:
            pr.add(rp.where, "rootpw needs a password (or --lock)")
        root = Account("root", rp.password, rp.crypted, rp.lock)
        allow_ssh = rp.allow_ssh
    groups = tuple((g.name, g.gid) for g in doc.groups)
    names = {"root"}
    users = []
    for u in doc.users:
        if u.name in names:
            pr.add(u.where, f"user {u.name} is given twice")
        names.add(u.name)
        users.append(Account(u.name, u.password, u.crypted, u.lock, u.groups, u.uid, u.gid,
                             u.homedir, u.shell, u.gecos))
    keys = []
    for k in doc.sshkeys:
        if k.username not in names:
            pr.warn(k.where, f"sshkey --username {k.username}: no user line creates "
                    f"{k.username}; the image must have it")
        if not k.key.startswith(("ssh-", "ecdsa-", "sk-")):
            pr.add(k.where, f"sshkey: {k.key[:30]!r} does not look like an OpenSSH public key")
        keys.append((k.username, k.key))
    hostname = None
    files = []
    for i, n in enumerate(doc.networks):
        if n.hostname:
            hostname = n.hostname
        if n.device is None and n.ip is None and n.bootproto == "dhcp" and not n.activate \
                and n.hostname and i == len(doc.networks) - 1 and len(doc.networks) > 1:
            continue  # a hostname-only line after the interfaces
        net = _network_file(n, i, pr)
        if net is not None:
            files.append(net)
    if hostname is not None and (len(hostname) > 64 or not all(
            part and part.replace("-", "").isalnum() for part in hostname.split("."))):
        pr.add(next(n.where for n in doc.networks if n.hostname == hostname),
               f"network --hostname {hostname!r} is not a valid host name")
    tz = doc.setting("timezone")
    timezone = tz.get("timezone") if tz else None
    if tz is not None and tz.get("ntpservers"):
        pr.warn(tz.where, "timezone --ntpservers is not applied: configure time servers in "
                "the image")
    kb = doc.setting("keyboard")
    lang = doc.setting("lang")
    svc = doc.setting("services")
    bl = doc.setting("bootloader")
    kargs: tuple[str, ...] = ()
    timeout = None
    bootloader = None
    if bl is not None:
        try:
            kargs = tuple(shlex.split(bl.get("append") or ""))
        except ValueError as exc:
            pr.add(bl.where, f"bootloader --append: {exc}")
        for karg in kargs:  # the install's own check, here so validate and --dry-run say it
            if (why := karg_problem(karg)) is not None:
                pr.add(bl.where, f"bootloader --append: kernel argument {karg!r}: {why}")
        raw_timeout = bl.get("timeout")  # "0" counts: it boots the default at once
        timeout = int(raw_timeout) if raw_timeout is not None else None
        if timeout is not None and not 0 <= timeout <= MAX_BOOTLOADER_TIMEOUT:
            pr.add(bl.where, f"bootloader --timeout {timeout}: give 0 to "
                   f"{MAX_BOOTLOADER_TIMEOUT} seconds")
            timeout = None
        if bl.get("location") == "none":
            bootloader = "none"
        elif bl.get("location") == "partition":
            pr.add(bl.where, "bootloader --location=partition is not supported: GRUB goes to "
                   "the disk (mbr)")
        if bl.get("sdboot") == "True":
            bootloader = "systemd"
        if bl.get("password"):
            pr.warn(bl.where, "bootloader --password is not applied by bootc-py")
    se = doc.setting("selinux")
    fw = doc.setting("firewall")
    system = SystemConfig(
        root=root, root_allow_ssh=allow_ssh, users=tuple(users), groups=groups,
        ssh_keys=tuple(keys), hostname=hostname, network=tuple(files), timezone=timezone,
        keymap=kb.get("vckeymap") if kb else None, lang=lang.get("lang") if lang else None,
        services_enabled=tuple((svc.get("enabled") or "").split(",")) if svc and
        svc.get("enabled") else (),
        services_disabled=tuple((svc.get("disabled") or "").split(",")) if svc and
        svc.get("disabled") else (),
        bootloader_timeout=timeout, selinux=se.get("mode") if se else None,
        firewall=("enabled" + (f" ({fw.get('services')})" if fw.get("services") else "")
                  if fw.get("enabled") == "yes" else "disabled") if fw else None)
    return system, kargs, bootloader


def _network_file(n: Any, index: int, pr: _Problems) -> NetworkFile | None:
    match: list[str]
    if n.device is None or n.device in ("link", "bootif"):
        match = ["Name=en* eth*"]
        stem = "ethernet"
    elif n.device.count(":") == 5:
        match = [f"MACAddress={n.device.lower()}"]
        stem = n.device.replace(":", "").lower()
    else:
        match = [f"Name={n.device}"]
        stem = n.device
    lines = ["[Match]", *match, "", "[Network]"]
    if n.bootproto == "dhcp" or n.bootproto == "bootp":
        lines.append("DHCP=yes" if n.ipv6 != "none" else "DHCP=ipv4")
    elif n.bootproto == "static":
        if not n.ip or not n.netmask:
            pr.add(n.where, "network --bootproto static needs --ip and --netmask")
            return None
        try:
            prefix = _prefix(n.netmask) if "." in n.netmask else int(n.netmask)
            ipaddress.ip_interface(f"{n.ip}/{prefix}")
        except ValueError as exc:
            pr.add(n.where, f"network: {exc}")
            return None
        lines.append(f"Address={n.ip}/{prefix}")
        if n.gateway and not n.nodefroute:
            lines.append(f"Gateway={n.gateway}")
    else:
        pr.add(n.where, f"network --bootproto {n.bootproto} is not supported: use dhcp or "
               "static")
        return None
    if n.ipv6 and n.ipv6 not in ("auto", "dhcp", "none"):
        lines.append(f"Address={n.ipv6}")
        if n.ipv6gateway:
            lines.append(f"Gateway={n.ipv6gateway}")
    lines += [f"DNS={ns}" for ns in n.nameservers]
    if n.mtu:
        lines += ["", "[Link]", f"MTUBytes={n.mtu}"]
    if not n.onboot:
        lines += ["", "[Link]", "ActivationPolicy=manual"] if not n.mtu else \
            ["ActivationPolicy=manual"]
    return NetworkFile(f"{50 + index}-kickstart-{stem}.network", "\n".join(lines) + "\n")


def problem_lines(exc: BootcPyError) -> list[str]:
    """One line per problem, as `kickstart validate` prints them."""
    if isinstance(exc, KickstartError):
        return [str(p) for p in exc.problems]
    return [exc.message]
