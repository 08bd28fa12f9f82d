"""`rollback`: the rollback deployment becomes the default; a staged one is dropped.

On the booted host a second rollback (before rebooting) undoes the first, as bootc's does: the
booted deployment becomes the default again. The new order is written through libostree at
once (2022.7's CLI has no verb for it), so the bootloader follows right away.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bootc_py.bootloader import bootcount
from bootc_py.errors import UpdateError
from bootc_py.store.sysroot import Deployment, Sysroot, current_of, rollback_of
from bootc_py.update import host as hostops


@dataclass(frozen=True)
class RollbackPlan:
    new_default: Deployment
    dropped_staged: Deployment | None
    undoes_queued: bool  # booted host: the booted deployment becomes the default again


@dataclass(frozen=True)
class RollbackResult:
    default: str        # "<checksum>.<serial>" of the new default
    imgref: str | None
    dropped_staged: bool
    rebooting: bool
    message: str


def plan_rollback(deps: tuple[Deployment, ...]) -> RollbackPlan:
    """Pure: which deployment becomes the default."""
    staged = next((d for d in deps if d.staged), None)
    booted = next((d for d in deps if d.booted), None)
    default = next((d for d in deps if not d.staged), None)
    if booted is not None and default is not None and booted.key != default.key:
        return RollbackPlan(booted, staged, True)
    target = rollback_of(deps)
    if target is None:
        current = current_of(deps)
        raise UpdateError("there is no rollback deployment" +
                          (f" (only {current.key[:16]})" if current else ""),
                          "a rollback needs an earlier deployment; see bootc-py status")
    return RollbackPlan(target, staged, False)


def rollback(sysroot: Path, *, apply: bool = False) -> RollbackResult:
    """Make the rollback deployment the default (dropping a staged one); `apply` reboots."""
    store = Sysroot(sysroot)
    store.require()
    hostops.check_apply(store, apply)
    plan = plan_rollback(store.deployments())
    store.set_default(plan.new_default)
    (store.state_dir / "downloaded").unlink(missing_ok=True)
    # A dropped staged deployment takes its boot-count request along (the sync below also
    # stops a GRUB counter armed for a deployment that is no longer the default).
    bootcount.clear_request(store.root / "boot")
    if store.is_booted:
        store.lock_staged(False)
    hostops.sync_bootloader(store)
    origin = plan.new_default.origin
    what = origin.imgref if origin else plan.new_default.key[:16]
    msg = (f"Rollback undone: {what} (booted) is the default again." if plan.undoes_queued
           else f"Next boot: {what} ({plan.new_default.key[:16]}).")
    if plan.dropped_staged is not None:
        msg += " The staged deployment was dropped."
    result = RollbackResult(plan.new_default.key, origin.imgref if origin else None,
                            plan.dropped_staged is not None, apply, msg)
    if apply:
        hostops.reboot()
    return result
