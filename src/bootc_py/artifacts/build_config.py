"""bootc-image-builder's build configuration (config.toml, or JSON): read, checked, and turned
into the kickstart lines bootc-py already installs from.

    [[customizations.user]]            name, password, key, groups (+ home, shell, uid, gid,
                                       description)
    [customizations.kernel]            append (name: accepted, the image carries its kernel)
    [[customizations.filesystem]]      mountpoint (/, /boot, /var and below), minsize
    [customizations.disk]              minsize, partitiontable = "gpt", [[...partitions]]:
                                       type plain|lvm|btrfs as bootc-image-builder defines them
    [customizations.installer]         kickstart.contents, unattended (modules: accepted)
    [customizations.iso]               volume_id, application_id, publisher

render_kickstart() is pure: the configuration as kickstart commands (user, sshkey, bootloader
--append, and part/volgroup/logvol/btrfs for the filesystem or disk customizations), the same
install path `build --kickstart` takes. Every problem is one line naming the key.
"""

from __future__ import annotations

import json
import math
import re
import shlex
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bootc_py.errors import ConfigError

# Where an image carries its own build configuration (bootc-image-builder reads the same).
EMBEDDED = ("usr/lib/bootc-image-builder/config.toml", "usr/lib/bootc-image-builder/config.json")
FS_TYPES = ("xfs", "ext4", "vfat", "swap")
_UNITS = {"": 1, "b": 1, "kb": 10**3, "kib": 2**10, "mb": 10**6, "mib": 2**20,
          "gb": 10**9, "gib": 2**30, "tb": 10**12, "tib": 2**40}


class ConfigProblems(ConfigError):
    """Every problem of a configuration file, one line each."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__(problems[0] if len(problems) == 1 else
                         f"{problems[0]} (and {len(problems) - 1} more)")
        self.problems = tuple(problems)


@dataclass(frozen=True)
class User:
    name: str
    password: str | None = None
    key: str | None = None
    groups: tuple[str, ...] = ()
    home: str | None = None
    shell: str | None = None
    uid: int | None = None
    gid: int | None = None
    description: str | None = None


@dataclass(frozen=True)
class Volume:
    """A logical volume, a btrfs subvolume, or a plain partition's filesystem."""

    mountpoint: str
    minsize: int = 0            # bytes
    fs_type: str | None = None
    label: str | None = None
    name: str | None = None


@dataclass(frozen=True)
class DiskPartition:
    type: str                   # plain, lvm, btrfs
    minsize: int = 0
    plain: Volume | None = None
    name: str | None = None     # the volume group's
    volumes: tuple[Volume, ...] = ()


@dataclass(frozen=True)
class BuildConfig:
    source: str
    users: tuple[User, ...] = ()
    kargs: tuple[str, ...] = ()
    filesystems: tuple[Volume, ...] = ()
    partitions: tuple[DiskPartition, ...] = ()
    disk_minsize: int | None = None
    kickstart: str | None = None
    unattended: bool | None = None
    volume_id: str | None = None
    application_id: str | None = None
    publisher: str | None = None
    warnings: tuple[str, ...] = field(default=())

    @property
    def shapes_layout(self) -> bool:
        return bool(self.filesystems or self.partitions)

    @property
    def shapes_install(self) -> bool:
        """Anything the installed system gets from it (users, kargs, layout)."""
        return bool(self.users or self.kargs or self.shapes_layout)


def load(path: str) -> BuildConfig:
    """--config PATH (TOML, or JSON by its .json suffix or its '{'); '-' reads JSON from
    standard input, as bootc-image-builder does."""
    import sys

    if path == "-":
        return parse(sys.stdin.read(), "<stdin>")
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"--config: {path} does not exist or is not a file")
    try:
        text = p.read_text()
    except UnicodeDecodeError:
        raise ConfigError(f"--config: {path} is not a text file") from None
    return parse(text, path)


def parse(text: str, source: str) -> BuildConfig:
    if source.endswith(".json") or text.lstrip().startswith("{"):
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{source}: not valid JSON: {exc}") from None
    else:
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    return _Reader(source).config(doc)


class _Reader:
    """Walks the document against the schema, collecting every problem."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[str] = []
        self.warnings: list[str] = []

    def bad(self, where: str, why: str) -> None:
        self.problems.append(f"{self.source}: {where}: {why}")

    def table(self, value: Any, where: str, keys: Sequence[str]) -> Mapping[str, Any]:
        if not isinstance(value, dict):
            self.bad(where, "must be a table")
            return {}
        for key in value:
            if key not in keys:
                self.bad(f"{where}.{key}", f"unknown key (known: {', '.join(keys)})")
        return value

    def tables(self, value: Any, where: str) -> list[Any]:
        if not isinstance(value, list):
            self.bad(where, "must be a list of tables ([[...]])")
            return []
        return value

    def string(self, table: Mapping[str, Any], key: str, where: str, *,
               required: bool = False) -> str | None:
        value = table.get(key)
        if value is None:
            if required:
                self.bad(f"{where}.{key}", "is required")
            return None
        if not isinstance(value, str) or not value:
            self.bad(f"{where}.{key}", "must be a non-empty string")
            return None
        return value

    def integer(self, table: Mapping[str, Any], key: str, where: str) -> int | None:
        value = table.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            self.bad(f"{where}.{key}", "must be a whole number")
            return None
        return value

    def size(self, table: Mapping[str, Any], key: str, where: str) -> int | None:
        value = table.get(key)
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", str(value)) \
            if isinstance(value, str) else None
        if m is None or m.group(2).lower() not in _UNITS or float(m.group(1)) <= 0:
            self.bad(f"{where}.{key}", f"{value!r} is not a size (bytes, or e.g. \"10 GiB\", "
                     "\"512 MiB\", \"20 GB\")")
            return None
        return math.ceil(float(m.group(1)) * _UNITS[m.group(2).lower()])

    def fs_type(self, table: Mapping[str, Any], key: str, where: str,
                allowed: Sequence[str] = FS_TYPES) -> str | None:
        value = self.string(table, key, where)
        if value is not None and value not in allowed:
            self.bad(f"{where}.{key}", f"'{value}' is not one of {', '.join(allowed)}")
            return None
        return value

    def mountpoint(self, table: Mapping[str, Any], where: str, *,
                   required: bool = True) -> str | None:
        mp = self.string(table, "mountpoint", where, required=required)
        if mp is None:
            return None
        if not mp.startswith("/") or "//" in mp or (len(mp) > 1 and mp.endswith("/")):
            self.bad(f"{where}.mountpoint", f"'{mp}' is not an absolute path")
            return None
        if not (mp in ("/", "/boot", "/var") or mp.startswith("/var/")):
            self.bad(f"{where}.mountpoint", f"'{mp}' cannot be its own filesystem in a "
                     "bootable container image: use /, /boot, /var or a path below /var")
            return None
        return mp

    # The schema.

    def config(self, doc: Any) -> BuildConfig:
        top = self.table(doc, "(top level)", ("customizations",))
        c = self.table(top.get("customizations", {}), "customizations",
                       ("user", "kernel", "filesystem", "disk", "installer", "iso"))
        users = tuple(u for i, t in enumerate(self.tables(c.get("user", []), "customizations.user"))
                      if (u := self.user(t, f"customizations.user[{i}]")) is not None)
        names = [u.name for u in users]
        for dup in sorted({n for n in names if names.count(n) > 1}):
            self.bad("customizations.user", f"'{dup}' is listed twice")
        kargs: tuple[str, ...] = ()
        if "kernel" in c:
            kernel = self.table(c["kernel"], "customizations.kernel", ("append", "name"))
            append = self.string(kernel, "append", "customizations.kernel")
            if append is not None:
                try:
                    kargs = tuple(shlex.split(append))
                except ValueError as exc:
                    self.bad("customizations.kernel.append", str(exc))
            if "name" in kernel:
                self.warnings.append(f"{self.source}: customizations.kernel.name is not "
                                     "applied: a bootable image carries its own kernel")
        filesystems = tuple(
            v for i, t in enumerate(self.tables(c.get("filesystem", []),
                                                "customizations.filesystem"))
            if (v := self.filesystem(t, f"customizations.filesystem[{i}]")) is not None)
        partitions: tuple[DiskPartition, ...] = ()
        disk_minsize = None
        if "disk" in c:
            disk = self.table(c["disk"], "customizations.disk",
                              ("minsize", "partitiontable", "partitions"))
            disk_minsize = self.size(disk, "minsize", "customizations.disk")
            table = disk.get("partitiontable", "gpt")
            if table != "gpt":
                self.bad("customizations.disk.partitiontable", f"'{table}' is not supported: "
                         "bootc-py writes GPT (BIOS and UEFI boot from it)")
            partitions = tuple(
                p for i, t in enumerate(self.tables(disk.get("partitions", []),
                                                    "customizations.disk.partitions"))
                if (p := self.partition(t, f"customizations.disk.partitions[{i}]")) is not None)
            if "filesystem" in c:
                self.bad("customizations.disk", "cannot be combined with "
                         "customizations.filesystem (as in bootc-image-builder): use one")
        self.mounts_once(filesystems, partitions)
        kickstart = unattended = None
        if "installer" in c:
            inst = self.table(c["installer"], "customizations.installer",
                              ("kickstart", "unattended", "modules"))
            if "kickstart" in inst:
                ks = self.table(inst["kickstart"], "customizations.installer.kickstart",
                                ("contents",))
                kickstart = self.string(ks, "contents", "customizations.installer.kickstart",
                                        required=True)
            if "unattended" in inst:
                if isinstance(inst["unattended"], bool):
                    unattended = inst["unattended"]
                else:
                    self.bad("customizations.installer.unattended", "must be true or false")
            if "modules" in inst:
                self.warnings.append(f"{self.source}: customizations.installer.modules is not "
                                     "applied: bootc-py's installer is not Anaconda")
        iso: Mapping[str, Any] = {}
        if "iso" in c:
            iso = self.table(c["iso"], "customizations.iso",
                             ("volume_id", "application_id", "publisher"))
        volume_id = self.string(iso, "volume_id", "customizations.iso")
        if volume_id is not None and not re.fullmatch(r"[A-Z0-9_-]{1,32}", volume_id):
            self.bad("customizations.iso.volume_id", f"'{volume_id}' is not an ISO 9660 "
                     "volume id (up to 32 of A-Z, 0-9, _ and -)")
        if self.problems:
            raise ConfigProblems(self.problems)
        return BuildConfig(
            source=self.source, users=users, kargs=kargs, filesystems=filesystems,
            partitions=partitions, disk_minsize=disk_minsize, kickstart=kickstart,
            unattended=unattended, volume_id=volume_id,
            application_id=self.string(iso, "application_id", "customizations.iso"),
            publisher=self.string(iso, "publisher", "customizations.iso"),
            warnings=tuple(self.warnings))

    def user(self, value: Any, where: str) -> User | None:
        t = self.table(value, where, ("name", "password", "key", "groups", "home", "shell",
                                      "uid", "gid", "description"))
        name = self.string(t, "name", where, required=True)
        groups = t.get("groups", [])
        if not isinstance(groups, list) or not all(isinstance(g, str) and g for g in groups):
            self.bad(f"{where}.groups", "must be a list of group names")
            groups = []
        if name is not None and not re.fullmatch(r"[a-z_][a-z0-9_-]*\$?", name):
            self.bad(f"{where}.name", f"'{name}' is not a valid user name")
            name = None
        key = self.string(t, "key", where)
        if key is not None and "\n" in key.strip():
            self.bad(f"{where}.key", "must be one SSH public key (one line)")
        user = User(name or "", self.string(t, "password", where), key, tuple(groups),
                    self.string(t, "home", where), self.string(t, "shell", where),
                    self.integer(t, "uid", where), self.integer(t, "gid", where),
                    self.string(t, "description", where))
        return user if name else None

    def filesystem(self, value: Any, where: str) -> Volume | None:
        t = self.table(value, where, ("mountpoint", "minsize"))
        mp = self.mountpoint(t, where)
        size = self.size(t, "minsize", where)
        if "minsize" not in t:
            self.bad(f"{where}.minsize", "is required")
        return Volume(mp, size or 0) if mp is not None else None

    def partition(self, value: Any, where: str) -> DiskPartition | None:
        kind = value.get("type", "plain") if isinstance(value, dict) else "plain"
        if kind == "plain":
            t = self.table(value, where, ("type", "mountpoint", "label", "fs_type", "minsize"))
            vol = self.volume(t, where, name_key=None)
            return DiskPartition("plain", vol.minsize, plain=vol) if vol else None
        if kind == "lvm":
            t = self.table(value, where, ("type", "name", "minsize", "logical_volumes"))
            lvs = tuple(v for i, lv in enumerate(self.tables(t.get("logical_volumes", []),
                                                            f"{where}.logical_volumes"))
                        if (v := self.volume(self.table(lv, f"{where}.logical_volumes[{i}]", (
                            "name", "mountpoint", "label", "fs_type", "minsize")),
                            f"{where}.logical_volumes[{i}]", name_key="name")) is not None)
            vg = self.string(t, "name", where) or "bootc"
            return DiskPartition("lvm", self.size(t, "minsize", where) or 0, name=vg,
                                 volumes=lvs)
        if kind == "btrfs":
            t = self.table(value, where, ("type", "minsize", "subvolumes"))
            subs = []
            for i, sv in enumerate(self.tables(t.get("subvolumes", []), f"{where}.subvolumes")):
                st = self.table(sv, f"{where}.subvolumes[{i}]", ("name", "mountpoint"))
                sub = self.string(st, "name", f"{where}.subvolumes[{i}]", required=True)
                mp = self.mountpoint(st, f"{where}.subvolumes[{i}]")
                if sub and mp:
                    subs.append(Volume(mp, name=sub))
            return DiskPartition("btrfs", self.size(t, "minsize", where) or 0,
                                 volumes=tuple(subs))
        self.bad(f"{where}.type", f"'{kind}' is not one of plain, lvm, btrfs")
        return None

    def volume(self, t: Mapping[str, Any], where: str, *, name_key: str | None
               ) -> Volume | None:
        fs = self.fs_type(t, "fs_type", where)
        mp = self.mountpoint(t, where, required=fs != "swap")
        if fs == "swap":
            mp = "swap"
        name = self.string(t, name_key, where) if name_key else None
        if mp is None:
            return None
        return Volume(mp, self.size(t, "minsize", where) or 0, fs, self.string(t, "label", where),
                      name)

    def mounts_once(self, filesystems: Sequence[Volume],
                    partitions: Sequence[DiskPartition]) -> None:
        seen: list[str] = [v.mountpoint for v in filesystems]
        for p in partitions:
            seen += [p.plain.mountpoint] if p.plain else [v.mountpoint for v in p.volumes]
        for mp in sorted({m for m in seen if seen.count(m) > 1 and m != "swap"}):
            self.bad("customizations", f"the mount point {mp} is given twice")


def _mib(size: int) -> int:
    return max(1, math.ceil(size / 2**20))


def _fs(vol: Volume, root_fstype: str | None) -> str:
    fs = vol.fs_type or root_fstype
    return f" --fstype {fs}" if fs else ""


def layout_lines(cfg: BuildConfig, root_fstype: str | None = None) -> list[str]:
    """The filesystem or disk customizations as kickstart partitioning (empty: neither)."""
    if not cfg.shapes_layout:
        return []
    lines: list[str] = []
    mounts = {v.mountpoint for v in cfg.filesystems}
    for p in cfg.partitions:
        mounts |= {p.plain.mountpoint} if p.plain else {v.mountpoint for v in p.volumes}
    lines.append("reqpart" if "/boot" in mounts else "reqpart --add-boot")
    for v in cfg.filesystems:
        size = f" --size {_mib(v.minsize)}"
        if v.mountpoint == "/":
            lines.append(f"part /{size} --grow{_fs(v, root_fstype)}")
        elif v.mountpoint == "/boot":
            lines.append(f"part /boot{size} --fstype ext4")
        else:
            lines.append(f"part {v.mountpoint}{size}{_fs(v, root_fstype)}")
    for i, p in enumerate(cfg.partitions, 1):
        if p.plain is not None:
            v = p.plain
            grow = " --grow" if v.mountpoint == "/" else ""
            label = f" --label {v.label}" if v.label else ""
            lines.append(f"part {v.mountpoint} --size {_mib(v.minsize or 2**30)}{grow}"
                         f"{_fs(v, root_fstype)}{label}")
        elif p.type == "lvm":
            total = max(p.minsize, sum(v.minsize or 2**30 for v in p.volumes) + 2**24)
            lines.append(f"part pv.{i:02d} --size {_mib(total)}"
                         + (" --grow" if "/" in {v.mountpoint for v in p.volumes} else ""))
            lines.append(f"volgroup {p.name} pv.{i:02d}")
            for j, v in enumerate(p.volumes, 1):
                lv = v.name or (f"lv{j}" if v.mountpoint != "/" else "root")
                label = f" --label {v.label}" if v.label else ""
                lines.append(f"logvol {v.mountpoint} --vgname {p.name} --name {lv} "
                             f"--size {_mib(v.minsize or 2**30)}{_fs(v, root_fstype)}{label}")
        else:
            label = f"bootc-btrfs{i}"
            lines.append(f"part btrfs.{i:02d} --size {_mib(p.minsize or 2**31)} --grow")
            lines.append(f"btrfs none --label={label} btrfs.{i:02d}")
            for v in p.volumes:
                lines.append(f"btrfs {v.mountpoint} --subvol --name={v.name} LABEL={label}")
    if "/" not in mounts:  # bootc-image-builder adds the root last
        lines.append(f"part / --size 1024 --grow{_fs(Volume('/'), root_fstype)}")
    return lines


def user_lines(cfg: BuildConfig) -> list[str]:
    out: list[str] = []
    for u in cfg.users:
        args = [f"--name {u.name}"]
        if u.groups:
            args.append(f"--groups {','.join(u.groups)}")
        if u.password is not None:
            crypted = u.password.startswith(("$1$", "$5$", "$6$", "$y$", "$2b$"))
            args.append(f"--password {shlex.quote(u.password)}"
                        + (" --iscrypted" if crypted else " --plaintext"))
        for flag, value in (("--homedir", u.home), ("--shell", u.shell), ("--uid", u.uid),
                            ("--gid", u.gid), ("--gecos", u.description)):
            if value is not None:
                args.append(f"{flag} {shlex.quote(str(value))}")
        out.append("user " + " ".join(args))
        if u.key:
            out.append(f"sshkey --username {u.name} {shlex.quote(u.key.strip())}")
    return out


def render_kickstart(cfg: BuildConfig, *, base: str | None = None,
                     root_fstype: str | None = None, with_kargs: bool = True) -> str:
    """The kickstart an install from this configuration runs: `base` (a kickstart's text, or
    nothing) plus the configuration's users, keys, kargs and layout. A base that partitions
    and a configuration that does too are refused: which layout wins is not guessed."""
    layout = layout_lines(cfg, root_fstype)
    if base is not None and layout and _partitions(base):
        raise ConfigError(f"{cfg.source}: the filesystem/disk customizations and the "
                          "kickstart both set the disk layout", "keep one of them")
    lines = [f"# from {cfg.source} (bootc-py build --config)", *layout, *user_lines(cfg)]
    if with_kargs and cfg.kargs:
        lines.append("bootloader --append " + shlex.quote(" ".join(cfg.kargs)))
    text = "\n".join(lines) + "\n"
    return (base.rstrip("\n") + "\n" + text) if base else text


_PARTITIONING = re.compile(r"^\s*(part|partition|autopart|volgroup|logvol|btrfs|reqpart)\b",
                           re.M)


def _partitions(kickstart: str) -> bool:
    return bool(_PARTITIONING.search(kickstart))


def embedded(files: Mapping[str, bytes]) -> BuildConfig | None:
    """The configuration an image carries (EMBEDDED), from its captured files."""
    for path in EMBEDDED:
        if path in files:
            try:
                text = files[path].decode()
            except UnicodeDecodeError:
                raise ConfigError(f"the image's /{path} is not a text file") from None
            return parse(text, f"the image's /{path}")
    return None
