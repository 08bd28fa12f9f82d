"""`install reset` (factory reset) and `install finalize`.

reset: the booted image is deployed into a new stateroot, so /etc comes fresh from the image
(no merge deployment exists in a new stateroot) and /var is new (seeded from the image). Only
what the machine needs to boot is carried: the kernel arguments of the booted deployment and
its /etc/fstab (the /boot and ESP mounts). The old stateroot's deployment stays, as the
rollback, until the operator removes it (as bootc's `install reset`).
"""

from __future__ import annotations

import datetime
import logging
import shlex
from dataclasses import dataclass
from pathlib import Path

from bootc_py.bootloader import setup as bootloader
from bootc_py.bootloader.bls import read_entries
from bootc_py.errors import UpdateError, UsageError
from bootc_py.installer import kargs as karg_check
from bootc_py.installer import sysroot as install_state
from bootc_py.run import run
from bootc_py.store.sysroot import Deployment, Sysroot
from bootc_py.update import host as hostops

log = logging.getLogger(__name__)

CMDLINE = Path("/proc/cmdline")
# Kernel arguments ostree and the bootloaders add by themselves.
OWN_KARGS = ("ostree=", "BOOT_IMAGE=", "initrd=")


@dataclass(frozen=True)
class ResetResult:
    image: str
    stateroot: str
    previous: str
    deployment: Deployment


def default_stateroot(existing: set[str], today: datetime.date | None = None) -> str:
    """bootc's naming: state-YEAR-N, the first N not taken."""
    year = (today or datetime.date.today()).year
    n = 0
    while f"state-{year}-{n}" in existing:
        n += 1
    return f"state-{year}-{n}"


def booted_kargs(boot: Path, cmdline: str) -> tuple[str, ...]:
    """The booted deployment's own kernel arguments: its BLS entry's options (the one whose
    ostree= the kernel was started with), without ostree's and the loader's additions."""
    args = shlex.split(cmdline)
    ostree_arg = next((a for a in args if a.startswith("ostree=")), None)
    entry = next((e for e in read_entries(boot)
                  if ostree_arg and ostree_arg in shlex.split(e.options)), None)
    source = shlex.split(entry.options) if entry else args
    return tuple(a for a in source if not a.startswith(OWN_KARGS))


def reset_host(stateroot: str | None, *, kargs: tuple[str, ...] = (), apply: bool = False,
               root: Path = Path("/")) -> ResetResult:
    karg_check.check(kargs, "--karg")  # before anything: a bad one would be in the new entry
    store = Sysroot(root)
    store.require()
    if not store.is_booted:
        raise UsageError("install reset works on the booted host only",
                         "run it on the installed system itself")
    deps = store.deployments()
    booted = next((d for d in deps if d.booted), None)
    if booted is None or booted.origin is None:
        raise UpdateError("the booted deployment has no image origin: nothing to reset to")
    existing = {p.name for p in (root / "ostree/deploy").iterdir() if p.is_dir()}
    name = stateroot or default_stateroot(existing)
    if name in existing:
        raise UsageError(f"stateroot '{name}' already exists",
                         "name a new one with --stateroot")
    if not name or "/" in name or name.startswith("."):
        raise UsageError(f"invalid stateroot name '{name}'")
    carried = (*booted_kargs(root / "boot", CMDLINE.read_text()), *kargs)
    run(["ostree", "admin", "os-init", f"--sysroot={root}", name], quiet=True)
    log.info("deploying %s into the new stateroot %s (kargs: %s)", booted.origin.imgref, name,
             " ".join(carried))
    # Not staged: written now, with every other deployment retained (the old stateroot's
    # booted one becomes the rollback).
    new = store.deploy(booted.checksum, booted.origin, stateroot=name, kargs=list(carried),
                       retain=True)
    old_fstab = booted.path / "etc/fstab"
    if old_fstab.is_file():
        entries = [line for line in old_fstab.read_text().splitlines()
                   if line.strip() and not line.lstrip().startswith("#")]
        (new.path / "etc/fstab").unlink(missing_ok=True)
        (new.path / "etc/fstab").write_text(
            "# Carried by bootc-py install reset from the previous stateroot.\n"
            + "".join(f"{line}\n" for line in entries))
    install_state.seed_var(new)
    hostops.sync_bootloader(store)
    if apply:
        hostops.reboot()
    return ResetResult(booted.origin.imgref, name, booted.stateroot, new)


def finalize_install(root: Path) -> str:
    """Check that `root` holds a finished bootc-py install, regenerate the bootloader
    configuration from its BLS entries and flush the filesystems. Returns what was done."""
    root = root.resolve()
    store = Sysroot(root)
    if not store.repo.exists():
        raise UsageError(f"{root} holds no ostree sysroot (no ostree/repo)",
                         "install to it first (install to-filesystem or to-existing-root)")
    if not (root / install_state.ALEPH).is_file():
        raise UsageError(f"{root} has no {install_state.ALEPH}: the install did not finish",
                         "run the install again")
    deps = store.deployments()
    if not deps:
        raise UsageError(f"{root} has no deployment", "run the install again")
    done = bootloader.update(root / "boot", sysroot=root)
    for path in (root / "boot", root):
        run(["fsfreeze", "--freeze", str(path)], check=False)
        run(["fsfreeze", "--unfreeze", str(path)], check=False)
    return (f"{len(deps)} deployment(s), bootloader: {', '.join(done) or 'none recorded'}, "
            "filesystems flushed")
