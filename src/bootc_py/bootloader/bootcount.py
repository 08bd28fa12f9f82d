"""Boot counting: a newly staged deployment gets N tries, then the bootloader falls back.

GRUB: greenboot's grubenv variables on /boot/grub/grubenv (ext4, so `save_env` works there).
`boot_counter` = tries left, `boot_success` = 1 after a green boot. The grub.cfg bootc-py
generates decrements the counter itself (Debian's GRUB has no `increment` module, so the
decrement is spelled out) and at 0 boots the previous entry and sets -1, which tells bootc-py
after boot that a fallback happened. A green boot sets boot_success=1 and unsets boot_counter.

systemd-boot: BLS boot counting (systemd's automatic boot assessment): the entry file on the ESP
is named `<id>+<left>.conf`; systemd-boot renames it `<id>+<left-1>-<done+1>.conf` on every try
and sorts an entry with 0 left after the others. A green boot renames it `<id>.conf`, as
systemd-bless-boot does.

Arming happens after ostree wrote the staged deployment's entries (at shutdown, in
bootloader-sync): the updater leaves a request on /boot naming the staged deployment, and the
sync arms the default entry only if it is that deployment.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bootc_py.bootloader.bls import BlsEntry
from bootc_py.errors import BootloaderError
from bootc_py.run import run

log = logging.getLogger(__name__)

REQUEST = "bootc-py/bootcount-request.json"  # relative to the /boot filesystem
GRUBENV = "grub/grubenv"
# Which deployment the GRUB counter belongs to (GRUB never loads it: only bootc-py reads it).
ARMED = "bootc_py_armed"
MAX_TRIES = 9  # the grub.cfg decrement is a lookup table; keep it short
_COUNTED = re.compile(r"^(?P<base>.+?)\+(?P<left>\d+)(?:-(?P<done>\d+))?\.conf$")


def check_tries(tries: int) -> int:
    if not 1 <= tries <= MAX_TRIES:
        raise BootloaderError(f"boot attempts must be between 1 and {MAX_TRIES}, not {tries}",
                              "set GREENBOOT_MAX_BOOT_ATTEMPTS in /etc/greenboot/greenboot.conf")
    return tries


# -- the request the updater leaves when it stages ---------------------------------------------

@dataclass(frozen=True)
class ArmRequest:
    deployment: str  # ostree checksum of the staged deployment
    tries: int


def request_tries(boot: Path, deployment: str, tries: int) -> Path:
    """Ask the next bootloader sync to give `deployment` `tries` boots, once it is default."""
    path = boot / REQUEST
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, json.dumps({"deployment": deployment, "tries": check_tries(tries)}))
    return path


def read_request(boot: Path) -> ArmRequest | None:
    path = boot / REQUEST
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        return ArmRequest(str(data["deployment"]), check_tries(int(data["tries"])))
    except (ValueError, KeyError, TypeError, BootloaderError) as exc:
        log.warning("ignoring a corrupt boot-count request %s: %s", path, exc)
        path.unlink(missing_ok=True)
        return None


def clear_request(boot: Path) -> None:
    (boot / REQUEST).unlink(missing_ok=True)


def deployment_of(entry: BlsEntry, sysroot: Path) -> str | None:
    """The deployment checksum an entry boots (its ostree= link, resolved in `sysroot`)."""
    if entry.ostree_path is None:
        return None
    target = (sysroot / entry.ostree_path.lstrip("/")).resolve()
    checksum = target.name.split(".")[0]
    return checksum if re.fullmatch(r"[0-9a-f]{64}", checksum) else None


def entry_to_arm(request: ArmRequest | None, entries: Sequence[BlsEntry], sysroot: Path
                 ) -> BlsEntry | None:
    """The default entry, if it is the requested deployment (else nothing to arm yet)."""
    if request is None or not entries:
        return None
    return entries[0] if deployment_of(entries[0], sysroot) == request.deployment else None


# -- GRUB ---------------------------------------------------------------------------------------

def grub_script(env_path: str, entries: int, max_tries: int = MAX_TRIES) -> str:
    """grub.cfg lines: count this boot down, and boot the previous entry once none are left.

    `env_path` is the grubenv file as GRUB sees it after `search --set=root` (/grub/grubenv,
    or /boot/grub/grubenv when /boot is a directory of /).
    """
    if entries < 2:  # nothing to fall back to: never count
        return ""
    lines = [
        "# Boot counting (bootc-py, greenboot's variables): see bootloader/bootcount.py.",
        "insmod loadenv",
        "insmod test",
        f"if [ -f {env_path} ]; then",
        f"    load_env -f {env_path} boot_counter boot_success",
        "fi",
        'if [ -n "${boot_counter}" -a "${boot_success}" != "1" ]; then',
        '    if [ "${boot_counter}" = "0" -o "${boot_counter}" = "-1" ]; then',
        "        set default=1",
        "        set boot_counter=-1",
    ]
    for left in range(max_tries, 0, -1):
        lines.append(f'    elif [ "${{boot_counter}}" = "{left}" ]; then')
        lines.append(f"        set boot_counter={left - 1}")
    lines += [
        "    else",
        "        set boot_counter=0",
        "    fi",
        f"    save_env -f {env_path} boot_counter",
        "fi",
        "",
    ]
    return "\n".join(lines)


def parse_grubenv(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        if line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key] = value
    return values


def read_grubenv(boot: Path) -> dict[str, str]:
    path = boot / GRUBENV
    return parse_grubenv(path.read_text(errors="replace")) if path.is_file() else {}


def _editenv(boot: Path, *args: str) -> None:
    path = boot / GRUBENV
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file():
        run(["grub-editenv", str(path), "create"])
    run(["grub-editenv", str(path), *args])


def arm_grub(boot: Path, tries: int, deployment: str | None = None) -> None:
    values = [f"boot_counter={check_tries(tries)}", "boot_success=0"]
    if deployment is not None:
        values.append(f"{ARMED}={deployment}")
    _editenv(boot, "set", *values)


def grub_disarm_needed(env: Mapping[str, str], default: str | None) -> bool:
    """Pure: the counter counts tries of the deployment it was armed for; once another one is
    the default (a rollback, a permanent fallback), it must stop, or a later run-out would
    start the entry after the new default. -1 (fell back) is left for the health check."""
    counter = env.get("boot_counter")
    armed = env.get(ARMED)
    return counter is not None and counter != "-1" and armed is not None and armed != default


def disarm_grub(boot: Path) -> None:
    _editenv(boot, "unset", "boot_counter")
    _editenv(boot, "unset", ARMED)


def bless_grub(boot: Path) -> None:
    """A green boot: greenboot-grub2-set-success does exactly this."""
    _editenv(boot, "set", "boot_success=1")
    _editenv(boot, "unset", "boot_counter")
    _editenv(boot, "unset", ARMED)


def grub_fell_back(boot: Path) -> bool:
    """The counter ran out and GRUB booted the previous entry."""
    return read_grubenv(boot).get("boot_counter") == "-1"


def clear_grub_fallback(boot: Path) -> None:
    _editenv(boot, "unset", "boot_counter")
    _editenv(boot, "unset", ARMED)


# -- systemd-boot (BLS boot counting on the ESP) ------------------------------------------------

@dataclass(frozen=True)
class Counted:
    base: str  # the file name without the counter, "ostree-2-default.conf"
    left: int | None  # None: not counted
    done: int = 0

    @property
    def name(self) -> str:
        if self.left is None:
            return self.base
        stem = self.base.removesuffix(".conf")
        return f"{stem}+{self.left}-{self.done}.conf" if self.done else f"{stem}+{self.left}.conf"

    @property
    def bad(self) -> bool:
        return self.left == 0


def parse_counted(name: str) -> Counted:
    match = _COUNTED.match(name)
    if not match:
        return Counted(name, None)
    return Counted(match.group("base") + ".conf", int(match.group("left")),
                   int(match.group("done") or 0))


def esp_names(entries: Sequence[BlsEntry], present: Mapping[str, str], arm: BlsEntry | None,
              tries: int) -> dict[str, str]:
    """Entry file name on /boot -> its name on the ESP.

    `present` maps the ESP's current entry names to their text. An entry keeps the counter of
    the ESP file with the same base name and the same text (what systemd-boot renamed), the
    armed entry starts at `tries`, every other entry is uncounted.
    """
    by_base = {parse_counted(name).base: (name, text) for name, text in present.items()}
    names = {}
    for entry in entries:
        if arm is not None and entry.filename == arm.filename:
            names[entry.filename] = Counted(entry.filename, check_tries(tries)).name
            continue
        old = by_base.get(entry.filename)
        same = old is not None and _options(old[1]) == entry.options
        names[entry.filename] = old[0] if old is not None and same else entry.filename
    return names


def _options(text: str) -> str:
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        if key == "options":
            return value.strip()
    return ""


class EntryStore(Protocol):
    """What blessing needs from an ESP writer (systemd_boot.EspWriter has it)."""

    def listdir(self, path: str) -> list[str]: ...
    def read(self, path: str) -> bytes: ...
    def write_text(self, dest: str, text: str) -> None: ...
    def remove(self, path: str) -> None: ...


def booted_counted_entry(esp: EntryStore, booted_ostree: str) -> Counted | None:
    """The ESP entry this boot came from, if it is counted.

    The booted entry is the one whose ostree= argument is the kernel command line's.
    """
    for name in esp.listdir("loader/entries"):
        counted = parse_counted(name)
        if counted.left is None:
            continue
        text = esp.read(f"loader/entries/{name}").decode(errors="replace")
        if f"ostree={booted_ostree}" in _options(text).split():
            return counted
    return None


def has_bad_entry(esp: EntryStore) -> bool:
    """An entry with no tries left: systemd-boot has been starting another one."""
    return any(parse_counted(name).bad for name in esp.listdir("loader/entries"))


def bless_esp(esp: EntryStore, booted_ostree: str) -> str | None:
    """Rename the booted counted entry to its plain name; returns the new name, if any."""
    counted = booted_counted_entry(esp, booted_ostree)
    if counted is None:
        return None
    text = esp.read(f"loader/entries/{counted.name}").decode(errors="replace")
    esp.write_text(f"loader/entries/{counted.base}", text)  # new name first: a crash
    esp.remove(f"loader/entries/{counted.name}")           # leaves a bootable entry
    return counted.base


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as handle:
        handle.write(text + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
