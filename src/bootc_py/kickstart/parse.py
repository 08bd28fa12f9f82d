"""Kickstart text -> KickstartDoc: the only module that imports pykickstart.

pykickstart does the parsing (with an explicit handler version, so a newer pykickstart does
not change what a kickstart means); this module copies what bootc-py reads out of its handler
into frozen plain data, keeping each command's file and line for error messages. Parse errors
do not stop the parse: every one becomes a Problem, so `kickstart validate` reports them all.
"""

from __future__ import annotations

import posixpath
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pykickstart import constants
from pykickstart.errors import KickstartError
from pykickstart.parser import KickstartParser
from pykickstart.version import makeVersion, stringToVersion, versionMap

from bootc_py.errors import UsageError
from bootc_py.kickstart import source as ks_source

# The newest handler that has the `bootc` command (F43 introduced it; F45 added --bootloader).
DEFAULT_VERSION = "F46"


@dataclass(frozen=True)
class Where:
    """A place in a kickstart: file name as the user gave it, line number (1-based)."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class Problem:
    where: Where
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass(frozen=True)
class Seen:
    """A command or section header, in the order it appeared."""

    name: str          # command name as written ("part", "partition") or "%packages"
    where: Where


@dataclass(frozen=True)
class Payload:
    kind: str                   # "bootc" or "ostreecontainer"
    where: Where
    source: str                 # bootc --source-imgref / ostreecontainer --url
    target: str | None = None   # bootc --target-imgref
    transport: str | None = None
    stateroot: str = "default"
    remote: str | None = None
    verify_signatures: bool = True
    bootloader: str | None = None
    composefs: bool = False


@dataclass(frozen=True)
class ClearPart:
    where: Where
    mode: str                   # "all", "linux", "list", "none"
    drives: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()
    initlabel: bool = False
    disklabel: str | None = None


@dataclass(frozen=True)
class AutoPart:
    where: Where
    type: str                   # "plain", "lvm", "btrfs", "thinp"
    fstype: str | None = None
    nohome: bool = False
    noboot: bool = False
    noswap: bool = False
    encrypted: bool = False


@dataclass(frozen=True)
class Part:
    where: Where
    mountpoint: str             # "/", "/var", "swap", "biosboot", "pv.01", "btrfs.1", ...
    size_mib: int | None
    grow: bool = False
    maxsize_mib: int | None = None
    fstype: str | None = None
    ondisk: str | None = None
    label: str | None = None
    fsoptions: str | None = None
    onpart: str | None = None
    encrypted: bool = False
    recommended: bool = False


@dataclass(frozen=True)
class VolGroup:
    where: Where
    name: str
    pvs: tuple[str, ...]
    pesize_kib: int | None = None
    useexisting: bool = False


@dataclass(frozen=True)
class LogVol:
    where: Where
    mountpoint: str
    vgname: str
    name: str
    size_mib: int | None
    grow: bool = False
    maxsize_mib: int | None = None
    percent: int | None = None
    fstype: str | None = None
    label: str | None = None
    fsoptions: str | None = None
    thin: bool = False
    encrypted: bool = False
    useexisting: bool = False


@dataclass(frozen=True)
class Btrfs:
    where: Where
    mountpoint: str             # "none" for a volume nobody mounts directly
    subvol: bool
    name: str | None
    devices: tuple[str, ...]    # volume: btrfs.N partitions; subvolume: the volume's name
    label: str | None = None
    data_level: str | None = None
    metadata_level: str | None = None


@dataclass(frozen=True)
class RootPw:
    where: Where
    password: str | None
    crypted: bool
    lock: bool
    allow_ssh: bool


@dataclass(frozen=True)
class User:
    where: Where
    name: str
    groups: tuple[str, ...] = ()
    password: str | None = None
    crypted: bool = False
    lock: bool = False
    homedir: str | None = None
    shell: str | None = None
    uid: int | None = None
    gid: int | None = None
    gecos: str | None = None


@dataclass(frozen=True)
class Group:
    where: Where
    name: str
    gid: int | None = None


@dataclass(frozen=True)
class SshKey:
    where: Where
    username: str
    key: str


@dataclass(frozen=True)
class Network:
    where: Where
    device: str | None = None
    bootproto: str = "dhcp"
    ip: str | None = None
    netmask: str | None = None
    gateway: str | None = None
    nameservers: tuple[str, ...] = ()
    hostname: str | None = None
    activate: bool = False
    onboot: bool = True
    ipv6: str | None = None
    ipv6gateway: str | None = None
    nodefroute: bool = False
    mtu: str | None = None


@dataclass(frozen=True)
class Script:
    where: Where                # the section header's line
    kind: str                   # "pre", "post", "onerror"
    body: str
    interpreter: str = "/bin/sh"
    chroot: bool = True
    erroronfail: bool = False
    log: str | None = None


@dataclass(frozen=True)
class Setting:
    """A single-valued command whose arguments bootc-py reads as text (timezone, lang, ...)."""

    where: Where
    values: tuple[tuple[str, str], ...]  # (key, value) in a fixed order

    def get(self, key: str) -> str | None:
        return next((v for k, v in self.values if k == key), None)


@dataclass(frozen=True)
class KickstartDoc:
    source: str
    version: str
    seen: tuple[Seen, ...] = ()
    problems: tuple[Problem, ...] = ()
    warnings: tuple[str, ...] = ()
    payloads: tuple[Payload, ...] = ()
    clearpart: ClearPart | None = None
    zerombr: Where | None = None
    ignoredisk_only: tuple[str, ...] = ()
    ignoredisk_skip: tuple[str, ...] = ()
    autopart: AutoPart | None = None
    reqpart: Where | None = None
    reqpart_add_boot: bool = False
    parts: tuple[Part, ...] = ()
    volgroups: tuple[VolGroup, ...] = ()
    logvols: tuple[LogVol, ...] = ()
    btrfs: tuple[Btrfs, ...] = ()
    rootpw: RootPw | None = None
    users: tuple[User, ...] = ()
    groups: tuple[Group, ...] = ()
    sshkeys: tuple[SshKey, ...] = ()
    networks: tuple[Network, ...] = ()
    settings: tuple[tuple[str, Setting], ...] = field(default=())  # name -> Setting
    scripts: tuple[Script, ...] = ()

    def setting(self, name: str) -> Setting | None:
        return next((s for n, s in self.settings if n == name), None)

    def first(self, name: str) -> Seen | None:
        return next((s for s in self.seen if s.name == name), None)


def known_versions() -> tuple[str, ...]:
    return tuple(sorted(versionMap))


class _RecordingParser(KickstartParser):  # type: ignore[misc]
    """pykickstart's parser, recording where each command and section was, and collecting
    errors instead of stopping at the first."""

    def __init__(self, handler: Any, name: str, base: Path | str | None) -> None:
        self.files: list[str] = [name]
        self.bases: list[Path | str | None] = [base]
        self.seen: list[Seen] = []
        self.problems: list[Problem] = []
        self.where_of: dict[int, Where] = {}  # id(command or data object) -> its line
        super().__init__(handler, errorsAreFatal=False, missingIncludeIsFatal=False)

    def here(self, line: int) -> Where:
        return Where(self.files[-1], line)

    def setupSections(self) -> None:
        super().setupSections()
        for section in self._sections.values():
            section.handleHeader = self._recording(section.sectionOpen, section.handleHeader)

    def _recording(self, name: str, inner: Callable[[int, list[str]], Any]
                   ) -> Callable[[int, list[str]], Any]:
        def handle(lineno: int, args: list[str]) -> Any:
            self.seen.append(Seen(name, self.here(lineno)))
            return inner(lineno, args)
        return handle

    def handleCommand(self, lineno: int, args: list[str]) -> Any:
        where = self.here(lineno)
        self.seen.append(Seen(args[0], where))
        obj = super().handleCommand(lineno, args)
        if obj is not None:
            self.where_of[id(obj)] = where
        return obj

    def _tryFunc(self, fn: Callable[[], Any]) -> None:
        try:
            fn()
        except KickstartError as exc:
            self.errorsCount += 1
            line = exc.lineno if isinstance(exc.lineno, int) else 0
            message = " ".join(str(exc.message).split()) or "syntax error"
            self.problems.append(Problem(self.here(line), message))

    def readKickstart(self, f: str, reset: bool = True) -> None:
        # Only %include calls this (the top file is read from a string). A relative name is
        # looked up beside the including file, or against its URL; the file is named in
        # messages as written.
        base = self.bases[-1]
        if ks_source.is_url(f) or Path(f).is_absolute():
            location = f
        elif isinstance(base, str):
            location = _beside_url(base, f)
        else:
            location = str(Path(base or Path.cwd()) / f)
        self.files.append(f)
        try:
            if ks_source.is_url(location):
                text = ks_source.fetch(location)
                self.bases.append(location)
            else:
                text = Path(location).read_text()
                self.bases.append(Path(location).parent)
        except (UsageError, OSError, UnicodeDecodeError) as exc:
            why = exc.message if isinstance(exc, UsageError) else str(exc)
            self.problems.append(Problem(self.here(0), f"cannot read %include {f}: {why}"))
            self.files.pop()
            return
        try:
            self.readKickstartFromString(text, reset=False)
        finally:
            self.bases.pop()
            self.files.pop()


def _beside_url(base: str, name: str) -> str:
    """`name` next to the file at URL `base` (urljoin knows http but not tftp)."""
    u = urlsplit(base)
    path = posixpath.normpath(posixpath.join(posixpath.dirname(u.path) or "/", name))
    return urlunsplit(u._replace(path=path, query="", fragment=""))


def _opt(value: Any) -> str | None:
    return str(value) if value not in (None, "", 0) else None


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) and value else None


def _split(value: Any) -> tuple[str, ...]:
    if not value:
        return ()
    items = value if isinstance(value, list) else str(value).split(",")
    return tuple(s.strip() for s in items if str(s).strip())


_CLEARPART = {constants.CLEARPART_TYPE_ALL: "all", constants.CLEARPART_TYPE_LINUX: "linux",
              constants.CLEARPART_TYPE_LIST: "list", constants.CLEARPART_TYPE_NONE: "none"}
_AUTOPART = {constants.AUTOPART_TYPE_PLAIN: "plain", constants.AUTOPART_TYPE_LVM: "lvm",
             constants.AUTOPART_TYPE_BTRFS: "btrfs", constants.AUTOPART_TYPE_LVM_THINP: "thinp"}
_SCRIPTS = {constants.KS_SCRIPT_PRE: "pre", constants.KS_SCRIPT_POST: "post",
            constants.KS_SCRIPT_ONERROR: "onerror"}
_SELINUX = {constants.SELINUX_DISABLED: "disabled", constants.SELINUX_ENFORCING: "enforcing",
            constants.SELINUX_PERMISSIVE: "permissive"}
SCRIPT_SECTIONS = ("%pre", "%pre-install", "%post", "%onerror", "%traceback")


def _payloads(h: Any, at: Callable[[Any], Where]) -> tuple[Payload, ...]:
    found = []
    if "bootc" in h.commands and h.bootc.seen:
        c = h.bootc
        found.append(Payload("bootc", at(c), source=c.sourceImgRef, target=c.targetImgRef,
                             stateroot=c.stateroot or "default",
                             bootloader=getattr(c, "bootloader", None),
                             composefs=bool(getattr(c, "composefs", False))))
    if "ostreecontainer" in h.commands and h.ostreecontainer.seen:
        c = h.ostreecontainer
        found.append(Payload("ostreecontainer", at(c), source=c.url, transport=_opt(c.transport),
                             stateroot=getattr(c, "stateroot", None) or "default",
                             remote=_opt(c.remote),
                             verify_signatures=not c.noSignatureVerification))
    return tuple(found)


def _settings(h: Any, at: Callable[[Any], Where], seen: list[Seen]
              ) -> tuple[tuple[str, Setting], ...]:
    out: list[tuple[str, Setting]] = []

    def add(name: str, **values: Any) -> None:
        cmd = h.commands.get(name)
        if cmd is None or not cmd.seen:
            return
        text = tuple((k, str(v)) for k, v in values.items() if v not in (None, "", [], False))
        out.append((name, Setting(at(cmd), text)))

    add("timezone", timezone=h.timezone.timezone, utc=h.timezone.isUtc,
        ntpservers=",".join(h.timezone.ntpservers or ()), nontp=h.timezone.nontp)
    add("keyboard", vckeymap=h.keyboard.vc_keymap or h.keyboard.keyboard,
        xlayouts=",".join(h.keyboard.x_layouts or ()))
    add("lang", lang=h.lang.lang)
    add("services", enabled=",".join(h.services.enabled), disabled=",".join(h.services.disabled))
    add("bootloader", append=h.bootloader.appendLine,
        timeout=str(h.bootloader.timeout) if h.bootloader.timeout is not None else None,
        location=h.bootloader.location if h.bootloader.location not in ("mbr", None) else None,
        password=bool(h.bootloader.password), sdboot=h.bootloader.sdboot)
    add("selinux", mode=_SELINUX.get(h.selinux.selinux, "enforcing"))
    add("firewall", enabled="yes" if h.firewall.enabled else "no",
        services=",".join(h.firewall.services), ports=",".join(h.firewall.ports))
    # reboot/poweroff/halt/shutdown are one object in pykickstart, as are text/cmdline/graphical:
    # the name written is what counts.
    finish = [x for x in seen if x.name in ("reboot", "poweroff", "halt", "shutdown")]
    if finish:
        out.append(("finish", Setting(finish[-1].where, (("action", finish[-1].name),
                                                          *((("eject", "True"),)
                                                            if h.reboot.eject else ())))))
    display = [x for x in seen if x.name in ("text", "cmdline", "graphical")]
    if display:
        out.append(("display", Setting(display[-1].where, (
            ("mode", display[-1].name),
            *((("noninteractive", "True"),) if h.displaymode.nonInteractive else ())))))
    return tuple(out)


def parse(text: str, *, source: str, base_dir: Path | str | None = None,
          version: str = DEFAULT_VERSION) -> KickstartDoc:
    """Parse kickstart `text` (named `source` in messages; a relative %include is looked up in
    the directory or against the URL `base_dir`) with pykickstart's handler `version`. Pure
    apart from reading (or fetching) %include files."""
    if version not in versionMap:
        raise UsageError(f"unknown kickstart version '{version}'",
                         f"choose one of: {', '.join(v for v in known_versions() if v[0] != 'D')}")
    handler = makeVersion(stringToVersion(version) if version != "DEVEL" else versionMap[version])
    parser = _RecordingParser(handler, source, base_dir)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        parser.readKickstartFromString(text)
    h = handler

    def at(obj: Any) -> Where:
        # Data objects (part, user, ...) and commands carry the line they came from.
        return parser.where_of.get(id(obj)) or Where(source, int(getattr(obj, "lineno", 0) or 0))

    cp = h.clearpart
    clearpart = None
    if cp.seen:
        clearpart = ClearPart(at(cp), _CLEARPART.get(cp.type, "none"), _split(cp.drives),
                              _split(cp.devices), bool(cp.initAll), _opt(cp.disklabel))
    ap = h.autopart
    autopart = None
    if ap.seen:
        ap_type = _AUTOPART.get(ap.type, "lvm") if ap.type is not None else "lvm"
        autopart = AutoPart(at(ap), ap_type, _opt(ap.fstype), bool(ap.nohome), bool(ap.noboot),
                            bool(ap.noswap), bool(ap.encrypted))
    parts = tuple(
        Part(at(p), p.mountpoint, _int(p.size), bool(p.grow), _int(p.maxSizeMB), _opt(p.fstype),
             _opt(p.disk), _opt(p.label), _opt(p.fsopts), _opt(p.onPart), bool(p.encrypted),
             bool(p.recommended))
        for p in h.partition.partitions)
    volgroups = tuple(VolGroup(at(v), v.vgname, tuple(v.physvols), _int(v.pesize),
                               bool(v.preexist)) for v in h.volgroup.vgList)
    logvols = tuple(
        LogVol(at(lv), lv.mountpoint, lv.vgname, lv.name, _int(lv.size), bool(lv.grow),
               _int(lv.maxSizeMB), _int(lv.percent), _opt(lv.fstype), _opt(lv.label),
               _opt(lv.fsopts), bool(lv.thin_pool or lv.thin_volume), bool(lv.encrypted),
               bool(lv.preexist))
        for lv in h.logvol.lvList)
    btrfs = tuple(Btrfs(at(b), b.mountpoint, bool(b.subvol), _opt(b.name), tuple(b.devices),
                        _opt(b.label), _opt(b.dataLevel), _opt(b.metaDataLevel))
                  for b in h.btrfs.btrfsList)
    rp = h.rootpw
    rootpw = RootPw(at(rp), _opt(rp.password), bool(rp.isCrypted), bool(rp.lock),
                    bool(getattr(rp, "allow_ssh", False))) if rp.seen else None
    users = tuple(User(at(u), u.name, tuple(u.groups), _opt(u.password), bool(u.isCrypted),
                       bool(u.lock), _opt(u.homedir), _opt(u.shell), _int(u.uid), _int(u.gid),
                       _opt(u.gecos)) for u in h.user.userList)
    groups = tuple(Group(at(g), g.name, _int(g.gid)) for g in h.group.groupList)
    keys = tuple(SshKey(at(k), k.username, k.key) for k in h.sshkey.sshUserList)
    networks = tuple(
        Network(at(n), _opt(n.device), n.bootProto or "dhcp", _opt(n.ip), _opt(n.netmask),
                _opt(n.gateway), _split(n.nameserver), _opt(n.hostname), bool(n.activate),
                bool(n.onboot), _opt(n.ipv6), _opt(n.ipv6gateway), bool(n.nodefroute),
                _opt(n.mtu))
        for n in h.network.network)
    # h.scripts is in order of appearance, as are the script section headers seen.
    headers = [s.where for s in parser.seen if s.name in SCRIPT_SECTIONS]
    scripts = []
    for index, sc in enumerate(h.scripts):
        kind = _SCRIPTS.get(sc.type)
        if kind is None:
            continue  # %pre-install and %traceback: reported as unsupported sections
        where = headers[index] if index < len(headers) else Where(source, int(sc.lineno or 0))
        scripts.append(Script(where, kind, sc.script, sc.interp or "/bin/sh", bool(sc.inChroot),
                              bool(sc.errorOnFail), _opt(sc.logfile)))
    zerombr = at(h.zerombr) if h.zerombr.seen else None
    reqpart = at(h.reqpart) if h.reqpart.seen else None
    return KickstartDoc(
        source=source, version=version, seen=tuple(parser.seen), problems=tuple(parser.problems),
        warnings=tuple(" ".join(str(w.message).split()) for w in caught),
        payloads=_payloads(h, at), clearpart=clearpart, zerombr=zerombr,
        ignoredisk_only=_split(h.ignoredisk.onlyuse),
        ignoredisk_skip=_split(h.ignoredisk.ignoredisk), autopart=autopart, reqpart=reqpart,
        reqpart_add_boot=bool(h.reqpart.addBoot), parts=parts, volgroups=volgroups,
        logvols=logvols, btrfs=btrfs, rootpw=rootpw, users=users, groups=groups,
        sshkeys=keys, networks=networks, settings=_settings(h, at, parser.seen),
        scripts=tuple(scripts))
