"""Write a kickstart's SystemConfig into a deployment's /etc (and its users' homes in /var).

Plain file edits (passwd, shadow, group, hostname, ...), so they work for any image without
running its tools; the /etc merge carries them into every later deployment.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from bootc_py.errors import InstallError
from bootc_py.kickstart.translate import Account, SystemConfig
from bootc_py.run import output

log = logging.getLogger(__name__)

FIRST_UID = 1000
UNIT_DIRS = ("usr/lib/systemd/system", "etc/systemd/system")


def _read(path: Path) -> list[list[str]]:
    if not path.exists():
        return []
    return [line.split(":") for line in path.read_text().splitlines() if line.strip()]


def _write(path: Path, rows: list[list[str]], mode: int) -> None:
    path.write_text("".join(":".join(r) + "\n" for r in rows))
    os.chmod(path, mode)


def hash_password(plaintext: str) -> str:
    """SHA-512 crypt, as Anaconda writes it (openssl: no Python crypt module on 3.13)."""
    return output(["openssl", "passwd", "-6", "-stdin"], input=plaintext + "\n").strip()


def _shadow_field(a: Account) -> str:
    pw = a.password
    if pw is None:
        value = "!" if a.lock or a.name != "root" else "*"
        return value
    value = pw if a.crypted else hash_password(pw)
    return f"!{value}" if a.lock else value


def _next_id(rows: list[list[str]], index: int) -> int:
    used = {int(r[index]) for r in rows if len(r) > index and r[index].isdigit()}
    n = FIRST_UID
    while n in used:
        n += 1
    return n


def apply_accounts(etc: Path, var: Path, cfg: SystemConfig) -> None:
    passwd, shadow, group = _read(etc / "passwd"), _read(etc / "shadow"), _read(etc / "group")
    for name, gid in cfg.groups:
        if not any(g[0] == name for g in group):
            group.append([name, "x", str(gid if gid is not None else _next_id(group, 2)), ""])
    accounts = ([cfg.root] if cfg.root else []) + list(cfg.users)
    for a in accounts:
        existing = next((p for p in passwd if p[0] == a.name), None)
        if existing is None:
            uid = a.uid if a.uid is not None else _next_id(passwd, 2)
            if a.gid is not None:
                gid = a.gid
            else:  # a user private group, as useradd makes
                gid = uid if not any(g[2] == str(uid) for g in group) else _next_id(group, 2)
            if not any(g[0] == a.name for g in group):
                group.append([a.name, "x", str(gid), ""])
            home = a.homedir or f"/var/home/{a.name}"
            existing = [a.name, "x", str(uid), str(gid), a.gecos or "", home,
                        a.shell or "/bin/bash"]
            passwd.append(existing)
            _make_home(var, home, uid, gid)
        else:
            if a.shell:
                existing[6] = a.shell
            if a.gecos:
                existing[4] = a.gecos
        row = next((s for s in shadow if s[0] == a.name), None)
        if row is None:
            row = [a.name, "!", "", "0", "99999", "7", "", "", ""]
            shadow.append(row)
        if a.password is not None or a.lock or a.name != "root":
            row[1] = _shadow_field(a)
        for extra in a.groups:
            g = next((g for g in group if g[0] == extra), None)
            if g is None:
                raise InstallError(f"user {a.name}: group {extra} does not exist in the image",
                                   f"add `group --name {extra}` to the kickstart")
            members = [m for m in g[3].split(",") if m]
            if a.name not in members:
                g[3] = ",".join([*members, a.name])
    _write(etc / "passwd", passwd, 0o644)
    _write(etc / "group", group, 0o644)
    _write(etc / "shadow", shadow, 0o640 if (etc / "shadow").exists() else 0o600)
    if cfg.root_allow_ssh:
        conf = etc / "ssh/sshd_config.d/50-kickstart-rootpw.conf"
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text("PermitRootLogin yes\n")


def _var_path(var: Path, home: str) -> Path | None:
    """Where a home directory lives in the stateroot's /var (homes are under /var/home)."""
    for prefix, sub in (("/var/", ""), ("/home/", "home/"), ("/root", "roothome")):
        if home.startswith(prefix):
            return var / (sub + home[len(prefix):].lstrip("/")) if prefix != "/root" \
                else var / sub
    return None


def _make_home(var: Path, home: str, uid: int, gid: int) -> None:
    path = _var_path(var, home)
    if path is None:
        log.warning("home %s is not under /var: not created", home)
        return
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, uid, gid)
    path.chmod(0o700)


def apply_ssh_keys(etc: Path, var: Path, cfg: SystemConfig) -> None:
    passwd = {p[0]: p for p in _read(etc / "passwd")}
    for user, key in cfg.ssh_keys:
        entry = passwd.get(user)
        if entry is None:
            raise InstallError(f"sshkey --username {user}: no such user in the image",
                               f"add `user --name {user}`")
        home = _var_path(var, entry[5]) if user != "root" else var / "roothome"
        if home is None:
            raise InstallError(f"sshkey {user}: home {entry[5]} is not under /var")
        ssh = home / ".ssh"
        ssh.mkdir(parents=True, exist_ok=True)
        keys = ssh / "authorized_keys"
        with keys.open("a") as f:
            f.write(key.rstrip("\n") + "\n")
        for p in (ssh, keys):
            os.chown(p, int(entry[2]), int(entry[3]))
        ssh.chmod(0o700)
        keys.chmod(0o600)


def apply_settings(etc: Path, usr: Path, cfg: SystemConfig) -> list[str]:
    """Hostname, time zone, keymap, locale, network, services. Returns warnings."""
    warnings: list[str] = []
    if cfg.hostname:
        (etc / "hostname").write_text(cfg.hostname + "\n")
    if cfg.timezone:
        if not (usr / "share/zoneinfo" / cfg.timezone).is_file():
            raise InstallError(f"timezone {cfg.timezone}: the image has no "
                               f"/usr/share/zoneinfo/{cfg.timezone}",
                               "install tzdata in the image or fix the name")
        localtime = etc / "localtime"
        localtime.unlink(missing_ok=True)
        localtime.symlink_to(f"../usr/share/zoneinfo/{cfg.timezone}")
        (etc / "timezone").write_text(cfg.timezone + "\n")
    if cfg.keymap:
        (etc / "vconsole.conf").write_text(f"KEYMAP={cfg.keymap}\n")
    if cfg.lang:
        (etc / "locale.conf").write_text(f"LANG={cfg.lang}\n")
    if cfg.network:
        netdir = etc / "systemd/network"
        netdir.mkdir(parents=True, exist_ok=True)
        for f in cfg.network:
            (netdir / f.name).write_text(f.text)
        if not (usr / "lib/systemd/systemd-networkd").exists():
            warnings.append("network: the image has no systemd-networkd; the .network files "
                            "in /etc/systemd/network are not read")
        else:
            _enable(etc, usr, "systemd-networkd.service", warnings)
    for unit in cfg.services_enabled:
        _enable(etc, usr, unit, warnings)
    for unit in cfg.services_disabled:
        name = unit if "." in unit else f"{unit}.service"
        for link in (etc / "systemd/system").glob(f"*/{name}"):
            link.unlink()
    if cfg.selinux and not (etc / "selinux/config").exists():
        warnings.append(f"selinux --{cfg.selinux}: the image has no SELinux; ignored")
    elif cfg.selinux:
        text = (etc / "selinux/config").read_text()
        lines = [f"SELINUX={cfg.selinux}" if ln.startswith("SELINUX=") else ln
                 for ln in text.splitlines()]
        (etc / "selinux/config").write_text("\n".join(lines) + "\n")
    if cfg.firewall and not (usr / "sbin/firewalld").exists() and \
            not (usr / "bin/firewalld").exists():
        warnings.append(f"firewall {cfg.firewall}: the image has no firewalld; ignored")
    return warnings


def _enable(etc: Path, usr: Path, unit: str, warnings: list[str]) -> None:
    """What `systemctl enable` does for WantedBy= (the common case)."""
    name = unit if "." in unit else f"{unit}.service"
    path = next((usr.parent / d / name for d in UNIT_DIRS
                 if (usr.parent / d / name).is_file()), None)
    if path is None:
        raise InstallError(f"services --enabled {unit}: the image has no unit {name}")
    wanted = []
    in_install = False
    for line in path.read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            in_install = line == "[Install]"
        elif in_install and line.startswith(("WantedBy=", "RequiredBy=")):
            kind = "wants" if line.startswith("WantedBy=") else "requires"
            wanted += [(t, kind) for t in line.split("=", 1)[1].split()]
    if not wanted:
        warnings.append(f"services --enabled {unit}: {name} has no [Install] section "
                        "(static); nothing to enable")
    for target, kind in wanted:
        link = etc / "systemd/system" / f"{target}.{kind}" / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.unlink(missing_ok=True)
        link.symlink_to(f"/{path.relative_to(usr.parent)}")
