"""Health checks in greenboot's layout, so existing greenboot scripts work unchanged.

    /usr/lib/greenboot/check/{required.d,wanted.d}/*.sh   from the image
    /etc/greenboot/check/{required.d,wanted.d}/*.sh       the admin's (same name overrides /usr)
    {/usr/lib,/etc}/greenboot/{green.d,red.d}/*.sh        run after the verdict
    /etc/greenboot/greenboot.conf                         GREENBOOT_MAX_BOOT_ATTEMPTS (3),
                                                          DISABLED_HEALTHCHECKS=("a.sh" ...)

A failing required script makes the boot red; a failing wanted script only warns. Each script
runs under bash (as greenboot does: no exec bit needed) with a time limit; a hang is a failure.
A built-in required check (no systemd unit failed) is on by default; greenboot.conf's
BOOTC_PY_CHECK_FAILED_UNITS=false turns it off. The verdict is recorded per deployment under
/var/lib/bootc-py/health/ for `status`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from bootc_py.errors import BootcPyError, CommandError, ConfigError, TimeoutExpired
from bootc_py.run import run

if TYPE_CHECKING:
    from bootc_py.bootloader.bootcount import EntryStore
    from bootc_py.bootloader.setup import BootloaderSetup
    from bootc_py.update.upgrade import UpgradeResult

log = logging.getLogger(__name__)

USR_DIR = Path("usr/lib/greenboot/check")
ETC_DIR = Path("etc/greenboot/check")
CONF = Path("etc/greenboot/greenboot.conf")
STATE_DIR = Path("var/lib/bootc-py/health")
SCRIPT_TIMEOUT = 300.0
MAX_BOOT_ATTEMPTS = 9  # bootloader/bootcount.py's MAX_TRIES: the grub.cfg countdown's length
BUILTIN_UNITS = "bootc-py:no-failed-units"
OWN_UNIT = "bootc-py-healthcheck.service"


class CheckKind(StrEnum):
    REQUIRED = "required"
    WANTED = "wanted"


class Verdict(StrEnum):
    GREEN = "green"
    RED = "red"


@dataclass(frozen=True)
class GreenbootConf:
    max_boot_attempts: int = 3
    disabled: frozenset[str] = frozenset()
    check_failed_units: bool = True
    script_timeout: float = SCRIPT_TIMEOUT


def parse_greenboot_conf(text: str, where: str = "/etc/greenboot/greenboot.conf"
                         ) -> GreenbootConf:
    """The shell-variable file greenboot reads; unknown variables are ignored, as there."""
    values: dict[str, list[str]] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)", line)
        if not match:
            raise ConfigError(f"{where} line {number}: not VAR=value: {line!r}",
                              "greenboot.conf holds shell assignments such as "
                              "GREENBOOT_MAX_BOOT_ATTEMPTS=3")
        value = match.group(2).strip()
        array = value.startswith("(") and ")" in value  # a bash array, maybe a comment after
        try:
            words = shlex.split(value[1:value.rindex(")")] if array else value, comments=True)
        except ValueError as exc:
            raise ConfigError(f"{where} line {number}: {exc}", "fix the quoting") from exc
        values[match.group(1)] = words

    def one(key: str) -> str | None:
        got = values.get(key)
        return " ".join(got) if got is not None else None

    defaults = GreenbootConf()
    attempts = one("GREENBOOT_MAX_BOOT_ATTEMPTS")
    if attempts is not None and (not attempts.isdigit()
                                 or not 1 <= int(attempts) <= MAX_BOOT_ATTEMPTS):
        raise ConfigError(f"{where}: GREENBOOT_MAX_BOOT_ATTEMPTS={attempts!r} is not a "
                          f"number from 1 to {MAX_BOOT_ATTEMPTS}",
                          "e.g. GREENBOOT_MAX_BOOT_ATTEMPTS=3")
    units = one("BOOTC_PY_CHECK_FAILED_UNITS")
    if units is not None and units.lower() not in ("true", "false", "yes", "no", "1", "0"):
        raise ConfigError(f"{where}: BOOTC_PY_CHECK_FAILED_UNITS={units!r} is not a boolean",
                          "use true or false")
    limit = one("BOOTC_PY_CHECK_TIMEOUT")
    if limit is not None and (not limit.isdigit() or int(limit) < 1):
        raise ConfigError(f"{where}: BOOTC_PY_CHECK_TIMEOUT={limit!r} is not a positive "
                          "number of seconds", "e.g. BOOTC_PY_CHECK_TIMEOUT=300")
    return GreenbootConf(
        max_boot_attempts=int(attempts) if attempts else defaults.max_boot_attempts,
        disabled=frozenset(values.get("DISABLED_HEALTHCHECKS", ())),
        check_failed_units=(units.lower() in ("true", "yes", "1") if units is not None
                            else defaults.check_failed_units),
        script_timeout=float(limit) if limit else defaults.script_timeout,
    )


def read_greenboot_conf(root: Path = Path("/")) -> GreenbootConf:
    path = root / CONF
    return parse_greenboot_conf(path.read_text(), str(path)) if path.is_file() else \
        GreenbootConf()


def stage_dirs(root: Path, stage: str) -> tuple[Path, Path]:
    """greenboot's places: checks under .../greenboot/check/, green.d and red.d beside check/
    (/usr/lib/greenboot/red.d, /etc/greenboot/red.d)."""
    if stage in ("green.d", "red.d"):
        return root / USR_DIR.parent / stage, root / ETC_DIR.parent / stage
    return root / USR_DIR / stage, root / ETC_DIR / stage


def scripts(root: Path, stage: str) -> list[Path]:
    """`*.sh` of a stage dir (required.d, wanted.d, green.d, red.d): /etc overrides /usr by
    name; run in name order."""
    found: dict[str, Path] = {}
    for base in stage_dirs(root, stage):
        if base.is_dir():
            for path in base.iterdir():
                if path.name.endswith(".sh") and path.is_file():
                    found[path.name] = path
    return [found[name] for name in sorted(found)]


@dataclass(frozen=True)
class CheckResult:
    name: str
    kind: CheckKind
    ok: bool
    detail: str  # "ok", "exit 1: <last stderr line>", "timed out after 300s"
    seconds: float


@dataclass(frozen=True)
class HealthVerdict:
    deployment: str  # ostree deployment checksum
    verdict: Verdict
    checked_at: str  # ISO 8601, UTC
    results: tuple[CheckResult, ...] = field(default=())

    @property
    def failed_required(self) -> list[CheckResult]:
        return [r for r in self.results if r.kind is CheckKind.REQUIRED and not r.ok]

    @property
    def warnings(self) -> list[CheckResult]:
        return [r for r in self.results if r.kind is CheckKind.WANTED and not r.ok]

    def summary(self) -> str:
        if self.verdict is Verdict.GREEN:
            extra = f", {len(self.warnings)} warning(s)" if self.warnings else ""
            return f"green ({len(self.results)} checks{extra}) at {self.checked_at}"
        names = ", ".join(r.name for r in self.failed_required)
        return f"red (failed: {names}) at {self.checked_at}"

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, object]) -> HealthVerdict:
        raw_results = data.get("results")
        results = tuple(
            CheckResult(name=str(r["name"]), kind=CheckKind(r["kind"]), ok=bool(r["ok"]),
                        detail=str(r["detail"]), seconds=float(r["seconds"]))
            for r in (raw_results if isinstance(raw_results, list) else []))
        return cls(deployment=str(data["deployment"]), verdict=Verdict(str(data["verdict"])),
                   checked_at=str(data["checked_at"]), results=results)


ScriptRunner = Callable[[Path, float], str | None]


def run_script(path: Path, timeout: float) -> str | None:
    """Run one greenboot script; None when it passed, else why it failed."""
    try:
        res = run(["bash", str(path)], check=False, capture=True, timeout=timeout,
                  own_session=True)
    except TimeoutExpired:
        return f"timed out after {timeout:g}s"
    except CommandError as exc:  # could not even start
        return f"could not run: {exc.stderr.strip() or exc.message}"
    for line in res.stdout.splitlines():
        log.info("%s: %s", path.name, line)
    if res.returncode == 0:
        return None
    tail = res.stderr.strip().splitlines()[-1] if res.stderr.strip() else ""
    return f"exit {res.returncode}" + (f": {tail}" if tail else "")


def failed_units(timeout: float = 30.0) -> list[str]:
    """Names of failed systemd units (systemctl --failed), except this check's own."""
    res = run(["systemctl", "list-units", "--state=failed", "--no-legend", "--plain",
               "--no-pager"], capture=True, timeout=timeout)
    units = [line.split()[0] for line in res.stdout.splitlines() if line.strip()]
    return [u for u in units if u != OWN_UNIT]


def run_checks(root: Path, conf: GreenbootConf, *, runner: ScriptRunner = run_script,
               units: Callable[[], list[str]] = failed_units) -> list[CheckResult]:
    results: list[CheckResult] = []
    for kind in CheckKind:
        for path in scripts(root, f"{kind.value}.d"):
            if path.name in conf.disabled:
                log.info("health check %s is disabled in greenboot.conf", path.name)
                continue
            start = time.monotonic()
            why = runner(path, conf.script_timeout)
            results.append(CheckResult(path.name, kind, why is None, why or "ok",
                                       round(time.monotonic() - start, 3)))
            level = logging.INFO if why is None else (
                logging.ERROR if kind is CheckKind.REQUIRED else logging.WARNING)
            log.log(level, "%s check %s: %s", kind.value, path.name, why or "ok")
    if conf.check_failed_units and BUILTIN_UNITS not in conf.disabled:
        start = time.monotonic()
        try:
            bad = units()
            detail = ("failed units: " + ", ".join(bad)) if bad else "ok"
        except BootcPyError as exc:
            bad, detail = ["?"], f"could not list units: {exc.message}"
        results.append(CheckResult(BUILTIN_UNITS, CheckKind.REQUIRED, not bad, detail,
                                   round(time.monotonic() - start, 3)))
    return results


def decide(deployment: str, results: Sequence[CheckResult], now: datetime | None = None
           ) -> HealthVerdict:
    red = any(r.kind is CheckKind.REQUIRED and not r.ok for r in results)
    stamp = (now or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="seconds")
    return HealthVerdict(deployment, Verdict.RED if red else Verdict.GREEN, stamp,
                         tuple(results))


def run_followups(root: Path, verdict: HealthVerdict, conf: GreenbootConf,
                  runner: ScriptRunner = run_script) -> list[str]:
    """green.d or red.d; their failures are logged, never change the verdict."""
    failures = []
    stage = "green.d" if verdict.verdict is Verdict.GREEN else "red.d"
    for path in scripts(root, stage):
        if path.name in conf.disabled:
            continue
        why = runner(path, conf.script_timeout)
        if why is not None:
            log.warning("%s script %s failed: %s", stage, path.name, why)
            failures.append(path.name)
    return failures


# -- recorded verdicts (read by `status`) -------------------------------------------------------

def record_verdict(verdict: HealthVerdict, root: Path = Path("/")) -> Path:
    """Atomically write <root>/var/lib/bootc-py/health/<checksum>.json."""
    if not re.fullmatch(r"[0-9a-f]{64}", verdict.deployment):
        raise BootcPyError(f"refusing to record a health verdict for {verdict.deployment!r}",
                           "a deployment is named by its 64-hex ostree checksum")
    directory = root / STATE_DIR
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{verdict.deployment}.json"
    _write_json_atomically(path, verdict.to_json())
    return path


def read_verdict(checksum: str, root: Path = Path("/")) -> HealthVerdict | None:
    """The last verdict recorded for a deployment, None if none (or unreadable: status must
    still work on a host with a damaged record)."""
    path = root / STATE_DIR / f"{checksum}.json"
    try:
        data = json.loads(path.read_text())
        return HealthVerdict.from_json(data)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring unreadable health record %s: %s", path, exc)
        return None


def booted_deployment(root: Path = Path("/"), cmdline: str | None = None) -> str:
    """The booted deployment's checksum, from the kernel's ostree= argument."""
    arg = booted_ostree_arg(cmdline)
    target = (root / arg.lstrip("/")).resolve()
    checksum = target.name.split(".")[0]
    if not re.fullmatch(r"[0-9a-f]{64}", checksum):
        raise BootcPyError(f"cannot tell the booted deployment from ostree={arg} "
                           f"(resolves to {target})", "is /ostree the booted sysroot's?")
    return checksum


# -- after the verdict: bless the boot, or reboot while tries remain ------------------------------

@dataclass(frozen=True)
class BootState:
    """What the bootloader says about this boot (read before acting on a verdict)."""

    counted: bool  # this boot is one of a new deployment's counted tries
    fell_back: bool  # the tries ran out and the bootloader started the previous entry


EFI = Path("/sys/firmware/efi")


def started_by(setup: BootloaderSetup, efi: bool) -> str | None:
    """Pure: which of the installed bootloaders started this boot. A hybrid disk (GRUB for
    BIOS, systemd-boot on the ESP) has both armed: under UEFI only systemd-boot's counter
    means anything, under BIOS only GRUB's."""
    if efi:
        return "systemd-boot" if setup.systemd_boot else "grub" if setup.grub_efi else None
    return "grub" if setup.grub_bios else None


def boot_state(boot: Path, booted_ostree: str, *, efi: bool | None = None,
               esp: EntryStore | None = None) -> BootState:
    from bootc_py.bootloader import bootcount
    from bootc_py.bootloader.setup import esp_writer, load_setup

    setup = load_setup(boot)
    if setup is None:
        return BootState(False, False)
    loader = started_by(setup, EFI.exists() if efi is None else efi)
    if loader == "grub":
        counter = bootcount.read_grubenv(boot).get("boot_counter")
        return BootState(counter is not None and counter != "-1", counter == "-1")
    if loader == "systemd-boot":
        return esp_boot_state(esp or esp_writer(setup), booted_ostree)
    return BootState(False, False)


def esp_boot_state(esp: EntryStore, booted_ostree: str) -> BootState:
    """systemd-boot: the booted entry is counted (renamed `+left-done` before it started), or
    an entry ran out of tries (`+0-N`) and this boot is another one."""
    from bootc_py.bootloader import bootcount

    counted = bootcount.booted_counted_entry(esp, booted_ostree)
    # The last try is booted as "+0-N": still a counted try (a red verdict must reboot so
    # that systemd-boot starts the next entry).
    return BootState(counted is not None, bootcount.has_bad_entry(esp) and counted is None)


def bless(boot: Path, booted_ostree: str, *, efi: bool | None = None,
          esp: EntryStore | None = None) -> str:
    """Mark this boot good in the bootloader that started it (greenboot-grub2-set-success /
    systemd-bless-boot); returns what was done."""
    from bootc_py.bootloader import bootcount
    from bootc_py.bootloader.setup import esp_writer, load_setup

    setup = load_setup(boot)
    if setup is None:
        return "no bootc-py bootloader record: nothing to mark"
    loader = started_by(setup, EFI.exists() if efi is None else efi)
    counted_in_grub = (setup.grub_bios or setup.grub_efi) and \
        "boot_counter" in bootcount.read_grubenv(boot)
    if loader == "systemd-boot":
        name = bootcount.bless_esp(esp or esp_writer(setup), booted_ostree)
        if counted_in_grub:   # the BIOS half of a hybrid disk must not count it down later
            bootcount.bless_grub(boot)
        return f"ESP entry renamed {name}" if name else "ESP entry was not counted"
    if loader == "grub":
        if not counted_in_grub:
            return "grubenv: not a counted boot, nothing to mark"
        bootcount.bless_grub(boot)
        if setup.systemd_boot:   # and the UEFI half: its entry must not count down later
            bootcount.bless_esp(esp or esp_writer(setup), booted_ostree)
        return "grubenv: boot_success=1, boot_counter unset"
    return "nothing to mark"


def booted_ostree_arg(cmdline: str | None = None) -> str:
    text = cmdline if cmdline is not None else Path("/proc/cmdline").read_text()
    match = re.search(r"(?:^|\s)ostree=(\S+)", text)
    if not match:
        raise BootcPyError("this system was not booted from an ostree deployment",
                           "run the health check on a host installed by bootc-py")
    return match.group(1)


class BootUnhealthy(BootcPyError):
    """A required health check failed: this boot is red."""


@dataclass(frozen=True)
class HealthRun:
    verdict: HealthVerdict
    record: Path
    bootloader: str  # what was done in the bootloader
    reboot: bool  # red, and a counted try: reboot so the bootloader counts the next one
    followup_failures: tuple[str, ...] = ()
    fallback: BadImage | None = None  # this boot is a fallback, now made permanent


def healthcheck(root: Path = Path("/"), boot: Path = Path("/boot"), *,
                cmdline: str | None = None, runner: ScriptRunner = run_script,
                units: Callable[[], list[str]] = failed_units) -> HealthRun:
    """Run the checks of this boot, record the verdict, then bless the boot or ask for a
    reboot (greenboot's redboot-auto-reboot: only while the bootloader counts tries)."""
    conf = read_greenboot_conf(root)
    ostree_arg = booted_ostree_arg(cmdline)
    deployment = booted_deployment(root, cmdline)
    fallback = make_fallback_permanent(root, boot) if boot_state(boot, ostree_arg).fell_back \
        else None
    drop_stale_request(root, boot)
    verdict = decide(deployment, run_checks(root, conf, runner=runner, units=units))
    record = record_verdict(verdict, root)
    followups = tuple(run_followups(root, verdict, conf, runner))
    if verdict.verdict is Verdict.GREEN:
        try:
            note = bless(boot, ostree_arg)
        except BootcPyError as exc:  # the verdict stands; say why the mark is missing
            note = f"could not mark the boot good: {exc.message}"
            log.error("%s", note)
        return HealthRun(verdict, record, note, False, followups, fallback)
    try:
        state = boot_state(boot, ostree_arg)
    except BootcPyError as exc:
        log.error("cannot read the boot counter: %s", exc.message)
        state = BootState(False, False)
    what = ("a counted try of a new deployment: rebooting" if state.counted
            else "not a counted try: no reboot")
    return HealthRun(verdict, record, what, state.counted, followups, fallback)


# -- after a fallback: make it permanent, remember the bad image --------------------------------

BAD_IMAGES = Path("var/lib/bootc-py/bad-images.json")


@dataclass(frozen=True)
class BadImage:
    digest: str  # manifest digest the automatic updates must skip
    imgref: str | None
    deployment: str
    recorded_at: str
    fell_back_to: str | None = None  # the deployment the bootloader started instead
    reason: str = ""  # what the bad deployment's boots showed ("red: x.sh", "no verdict")

    def describe(self) -> str:
        what = f"{self.imgref or '(no image reference)'} {self.digest}"
        back = f" to {self.fell_back_to[:12]}" if self.fell_back_to else ""
        why = f" ({self.reason})" if self.reason else ""
        return f"{what}: fell back{back} at {self.recorded_at}{why}"

    def to_bootc(self) -> dict[str, object]:
        return {"imageDigest": self.digest, "image": self.imgref,
                "deployment": self.deployment, "fellBackTo": self.fell_back_to,
                "recordedAt": self.recorded_at, "reason": self.reason}


def read_bad_images(root: Path = Path("/")) -> list[BadImage]:
    path = root / BAD_IMAGES
    try:
        data = json.loads(path.read_text())
        return [BadImage(str(d["digest"]), d.get("imgref"), str(d["deployment"]),
                         str(d["recorded_at"]), d.get("fell_back_to"), str(d.get("reason", "")))
                for d in data]
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring unreadable %s: %s", path, exc)
        return []


def record_bad_image(bad: BadImage, root: Path = Path("/")) -> Path:
    path = root / BAD_IMAGES
    path.parent.mkdir(parents=True, exist_ok=True)
    known = [b for b in read_bad_images(root) if b.digest != bad.digest] + [bad]
    _write_json_atomically(path, [asdict(b) for b in known])
    return path


def _write_json_atomically(path: Path, data: object) -> None:
    """Readers (status, the agent) see the old record or the new one, never half of one."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", dir=path.parent)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def bad_image(digest: str | None, root: Path = Path("/")) -> BadImage | None:
    if digest is None:
        return None
    return next((b for b in read_bad_images(root) if b.digest == digest), None)


def is_bad_digest(digest: str | None, root: Path = Path("/")) -> bool:
    """Automatic updates skip an image that fell back here, until a newer digest appears."""
    return bad_image(digest, root) is not None


def fallback_reason(verdict: HealthVerdict | None) -> str:
    """Pure: what the bad deployment's last boot showed, for the record."""
    if verdict is None:
        return "no health verdict: its boots never reached the health checks"
    if verdict.verdict is Verdict.RED:
        return f"red at {verdict.checked_at}: " + ", ".join(
            f"{r.name} {r.detail}" for r in verdict.failed_required)
    return f"last verdict green at {verdict.checked_at}, later boots did not finish"


def make_fallback_permanent(sysroot: Path, boot: Path, now: datetime | None = None
                            ) -> BadImage | None:
    """On the boot after the tries ran out: the booted (previous) deployment becomes the
    default again, the bad one's digest is recorded, the bootloader's fallback state cleared."""
    from bootc_py.bootloader import bootcount
    from bootc_py.store.sysroot import Sysroot
    from bootc_py.update import host as hostops

    store = Sysroot(sysroot)
    deps = [d for d in store.deployments() if not d.staged]
    booted = next((d for d in deps if d.booted), None)
    if booted is None or not deps or deps[0].key == booted.key:
        if bootcount.grub_fell_back(boot):
            bootcount.clear_grub_fallback(boot)
        return None
    bad_dep = deps[0]
    store.set_default(booted)
    bootcount.clear_request(boot)
    hostops.sync_bootloader(store)
    if bootcount.grub_fell_back(boot):
        bootcount.clear_grub_fallback(boot)
    stamp = (now or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="seconds")
    origin = bad_dep.origin
    digest = store.commit_info(bad_dep.checksum).manifest_digest or \
        (origin.manifest_digest if origin else None)
    bad = BadImage(digest or f"commit:{bad_dep.checksum}",
                   origin.imgref if origin else None, bad_dep.checksum, stamp,
                   booted.checksum, fallback_reason(read_verdict(bad_dep.checksum, sysroot)))
    record_bad_image(bad, sysroot)
    log.warning("fell back from %s (%s): it is no longer the default, and automatic updates "
                "skip it", bad.imgref or bad_dep.key, bad.digest)
    return bad


# -- boot counting for what the updater stages -------------------------------------------------

def boot_attempts(root: Path = Path("/")) -> int:
    """GREENBOOT_MAX_BOOT_ATTEMPTS of the running system (a bad greenboot.conf fails here,
    before anything is fetched)."""
    return read_greenboot_conf(root).max_boot_attempts


def request_boot_count(boot: Path, deployment: str, tries: int) -> Path:
    """After staging: the bootloader sync at shutdown gives `deployment` `tries` boots once
    ostree has made it the default (a newer stage replaces the request)."""
    from bootc_py.bootloader import bootcount

    path = bootcount.request_tries(boot, deployment, tries)
    log.info("boot counting: %s gets %d tries when it is finalized", deployment[:12], tries)
    return path


def drop_stale_request(root: Path, boot: Path) -> bool:
    """At boot nothing is staged yet, so a request left over (a staged deployment a
    download-only lock or a crash kept from being finalized) is dropped."""
    from bootc_py.bootloader import bootcount
    from bootc_py.store.sysroot import Sysroot

    if bootcount.read_request(boot) is None:
        return False
    try:
        if Sysroot(root).staged() is not None:  # staged since boot: its request stands
            return False
    except BootcPyError as exc:
        log.warning("cannot list deployments: %s", exc.message)
        return False
    bootcount.clear_request(boot)
    log.info("dropped a boot-count request whose staged deployment is gone")
    return True


# -- automatic updates skip what fell back ---------------------------------------------------------

def skip_reason(root: Path) -> Callable[[str], str | None]:
    """For the upgrade: why an image digest must not be staged automatically (None: go)."""
    def reason(digest: str) -> str | None:
        bad = bad_image(digest, root)
        return None if bad is None else f"it fell back at {bad.recorded_at}"
    return reason


def drop_bad_staged(sysroot: Path) -> str | None:
    """A staged deployment of a digest recorded bad does not boot: drop it (and its
    boot-count request). Returns what was dropped."""
    from bootc_py.bootloader import bootcount
    from bootc_py.store.sysroot import Sysroot

    store = Sysroot(sysroot)
    staged = store.staged()
    if staged is None:
        return None
    digest = store.commit_info(staged.checksum).manifest_digest or \
        (staged.origin.manifest_digest if staged.origin else None)
    if not is_bad_digest(digest, sysroot):
        return None
    store.drop_staged()
    bootcount.clear_request(sysroot / "boot")
    log.warning("dropped the staged deployment of %s: it fell back before", digest)
    return digest


def guarded_upgrade(sysroot: Path, quiet: bool = True) -> UpgradeResult:
    """The automatic updater's upgrade: a staged bad image is dropped, a bad digest on the
    registry is skipped (a newer one is taken)."""
    from bootc_py.update.upgrade import upgrade

    drop_bad_staged(sysroot)
    return upgrade(sysroot, quiet=quiet, skip=skip_reason(sysroot))
