"""`switch`: follow another image from now on (e.g. an OCI layout on a USB stick)."""

from __future__ import annotations

from pathlib import Path

from bootc_py.errors import UsageError
from bootc_py.image.ref import Transport, parse_imgref
from bootc_py.image.source import PullOptions
from bootc_py.store.sysroot import Origin, Sysroot, current_of
from bootc_py.update import host as hostops
from bootc_py.update.upgrade import UpgradeResult, quiet_logs, update_to


def target_imgref(target: str, transport: str = "registry") -> str:
    """bootc's TARGET + --transport -> bootc-py's image reference (docker://..., oci:...)."""
    try:
        kind = Transport(transport)
    except ValueError:
        raise UsageError(f"unknown transport '{transport}'",
                         "use registry, oci, oci-archive or containers-storage") from None
    if kind is Transport.REGISTRY:
        text = target if target.startswith("docker://") else f"docker://{target}"
    else:
        text = f"{kind.value}:{target}"
    return str(parse_imgref(text))


def switch(sysroot: Path, target: str, *, transport: str = "registry", apply: bool = False,
           retain: bool = False, mutate_in_place: bool = False, quiet: bool = False,
           pull_options: PullOptions | None = None) -> UpgradeResult:
    """Deploy `target` and follow it from now on.

    `mutate_in_place` only rewrites the current deployment's origin (no download, no new
    deployment): the next upgrade fetches from the new image. `retain` keeps the older
    deployments that a deploy would otherwise remove.
    """
    store = Sysroot(sysroot)
    store.require()
    hostops.check_apply(store, apply)
    imgref = target_imgref(target, transport)
    if mutate_in_place:
        if apply:
            raise UsageError("--mutate-in-place changes no deployment: drop --apply")
        current = current_of(store.deployments())
        if current is None:
            raise UsageError(f"{sysroot} has no deployment to switch")
        old = current.origin.manifest_digest if current.origin else None
        store.set_origin(current, Origin(imgref, old))
        return UpgradeResult(imgref, old, None, None, False, False, False, False, 0, 0, 0,
                             current.key, False,
                             f"{current.key[:16]} now follows {imgref} (nothing deployed).")
    with quiet_logs(quiet):
        return update_to(store, imgref, apply=apply, retain=retain, pull_options=pull_options)
