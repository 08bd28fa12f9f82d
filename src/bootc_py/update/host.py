"""What every verb that changes deployments shares: the pull options an installed host uses,
the bootloader following a change at once, and the reboot of --apply."""

from __future__ import annotations

import logging
from pathlib import Path

from bootc_py.bootloader import setup as bootloader
from bootc_py.errors import UsageError
from bootc_py.image.source import PullOptions
from bootc_py.run import run
from bootc_py.store.sysroot import Deployment, Sysroot

log = logging.getLogger(__name__)

# bootc's places for the pull secret, in its order (the first that exists is used).
BOOTED_AUTH_FILES = (Path("/run/ostree/auth.json"), Path("/etc/ostree/auth.json"),
                     Path("/usr/lib/ostree/auth.json"))
REBOOT_TIMEOUT = 120.0


def cache_dir(sysroot: Sysroot) -> Path:
    """The updater's blob cache: on the sysroot's own filesystem (the space check covers it),
    and emptied of layers once they are imported."""
    return sysroot.state_dir / "cache"


def auth_file(sysroot: Sysroot, current: Deployment | None) -> Path | None:
    """/etc/ostree/auth.json (bootc's place) when present; else the containers auth files."""
    candidates: tuple[Path, ...]
    if sysroot.is_booted:
        candidates = BOOTED_AUTH_FILES
    elif current is not None:
        candidates = (current.path / "etc/ostree/auth.json",
                      current.path / "usr/lib/ostree/auth.json")
    else:
        candidates = ()
    return next((p for p in candidates if p.is_file()), None)


def registries_dropins(sysroot: Sysroot, current: Deployment | None) -> tuple[Path, ...]:
    """An offline sysroot's own registries.conf.d (its mirrors, its insecure registries),
    read after the running host's; the booted host's /etc already is the deployment's."""
    if sysroot.is_booted or current is None:
        return ()
    return (current.path / "etc/containers/registries.conf.d",)


def pull_options(sysroot: Sysroot, current: Deployment | None,
                 base: PullOptions | None = None) -> PullOptions:
    base = base or PullOptions()
    authfile = base.authfile or auth_file(sysroot, current)
    return PullOptions(cache_dir=cache_dir(sysroot), tls_verify=base.tls_verify,
                       authfile=authfile, arch=base.arch, jobs=base.jobs, os=base.os,
                       variant=base.variant, retries=base.retries,
                       registries_dropins=base.registries_dropins
                       + registries_dropins(sysroot, current))


def sync_bootloader(sysroot: Sysroot) -> list[str]:
    """Regenerate grub.cfg / the ESP copies from the BLS entries ostree just wrote."""
    boot = sysroot.root / "boot"
    done = bootloader.update(boot)
    if done:
        log.info("bootloader in sync: %s", ", ".join(done))
    return done


def check_apply(sysroot: Sysroot, apply: bool) -> None:
    """--apply reboots: only the booted host can."""
    if apply and not sysroot.is_booted:
        raise UsageError(f"--apply reboots the host, but {sysroot.root} is not the booted "
                         "sysroot", "drop --apply with --sysroot")


def reboot() -> None:
    log.info("rebooting to apply the change")
    run(["systemctl", "reboot"], timeout=REBOOT_TIMEOUT)
