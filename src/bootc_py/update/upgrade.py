"""`upgrade`: follow the image the host's deployment names, atomically.

Pure planning first: `plan_update()` takes what the registry says (manifest + config) and what
the repository holds and returns a frozen `UpdatePlan` (which layers to fetch, how many bytes
that needs, whether anything is to be deployed). `apply_plan()` then fetches only those layers,
imports them (one ostree commit per layer: an unchanged layer is never fetched or imported
again), removes the downloaded blobs (no double storage), and deploys: staged on the booted host
(finalized at shutdown), the default at once on a `--sysroot`. ostree's 3-way /etc merge and the
merge deployment's kernel arguments apply; /var is never touched.

Atomicity comes from ostree: nothing the bootloader reads changes until `ostree admin deploy`
(or finalize-staged at shutdown) swaps the boot entries in one rename; a crash before that
leaves only unreferenced objects, which the next run's cleanup prunes.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from bootc_py import log as steplog
from bootc_py.errors import BootcPyError, NoSpaceError, UpdateError, UsageError
from bootc_py.image import digest as dg
from bootc_py.image.cache import BlobCache
from bootc_py.image.ref import ImageRef, Transport, parse_imgref
from bootc_py.image.source import Image, Layer, PullOptions, human_size, pull, resolve
from bootc_py.nospace import says_no_space
from bootc_py.store.importer import import_image, layer_ref
from bootc_py.store.sysroot import Deployment, Origin, Sysroot, current_of
from bootc_py.update import cached_update, health
from bootc_py.update import host as hostops
from bootc_py.update.cached_update import CachedUpdate

log = logging.getLogger(__name__)

# The expanded layer (ostree objects) is estimated at twice its compressed blob: with the
# blob itself, an update needs about 3x the bytes it downloads (the manifest does not say).
EXPANSION = 2
DOWNLOADED_RECORD = "downloaded"  # offline --download-only: the deployment not yet default


class Action(StrEnum):
    NONE = "none"                      # the current deployment already is the image
    ALREADY_STAGED = "already-staged"  # a staged (or downloaded) deployment already is
    DEPLOY = "deploy"


@dataclass(frozen=True)
class UpdatePlan:
    imgref: str
    current_digest: str | None
    new_digest: str
    version: str | None
    fetch: tuple[Layer, ...]   # layers the repository lacks: downloaded and imported
    reuse: tuple[Layer, ...]   # layers already committed in the repository
    free_bytes: int
    stage: bool                # booted host: staged; offline: the default at once
    download_only: bool
    action: Action

    @property
    def bytes_to_fetch(self) -> int:
        return sum(x.size for x in self.fetch)

    @property
    def bytes_needed(self) -> int:
        return self.bytes_to_fetch * (1 + EXPANSION)

    def render(self) -> str:
        lines = [f"image:    {self.imgref}",
                 f"current:  {self.current_digest or '-'}",
                 f"new:      {self.new_digest}" + (f" ({self.version})" if self.version else ""),
                 f"action:   {self.action.value}"]
        if self.action is Action.DEPLOY:
            how = "staged for the next boot" if self.stage else "the default at once"
            if self.download_only:
                how = "downloaded only (not applied by a reboot)"
            lines += [f"deploy:   {how}",
                      f"fetch:    {len(self.fetch)} layer(s), {self.bytes_to_fetch} bytes",
                      f"reuse:    {len(self.reuse)} layer(s)",
                      f"needs:    {self.bytes_needed} bytes of {self.free_bytes} free"]
            lines += [f"  fetch {x.digest} {x.size}" for x in self.fetch]
        return "\n".join(lines) + "\n"


def plan_update(*, imgref: str, current_digest: str | None, staged_digest: str | None,
                new_digest: str, version: str | None, layers: tuple[Layer, ...],
                have_layers: frozenset[str], free_bytes: int, stage: bool,
                download_only: bool = False) -> UpdatePlan:
    """Pure: what to fetch and whether to deploy. `have_layers` holds the diff_ids the
    repository already has as layer commits."""
    if new_digest == staged_digest:
        action = Action.ALREADY_STAGED
    elif new_digest == current_digest and staged_digest is None:
        action = Action.NONE
    else:
        action = Action.DEPLOY
    unique = list({x.diff_id: x for x in layers}.values())
    fetch = tuple(x for x in unique if x.diff_id not in have_layers) \
        if action is Action.DEPLOY else ()
    reuse = tuple(x for x in unique if x not in fetch)
    return UpdatePlan(imgref, current_digest, new_digest, version, fetch, reuse, free_bytes,
                      stage, download_only, action)


def check_space(plan: UpdatePlan) -> None:
    if plan.action is Action.DEPLOY and plan.bytes_needed > plan.free_bytes:
        raise NoSpaceError(
            f"not enough space for the update of {plan.imgref}: it needs about "
            f"{human_size(plan.bytes_needed)} ({plan.bytes_to_fetch} bytes to download, "
            f"expanded) but the sysroot has {human_size(plan.free_bytes)} free",
            "free space on /sysroot (old deployments: bootc-py status), then retry")


@dataclass(frozen=True)
class UpgradeResult:
    """What an upgrade (or switch) did; `message` is the one line the CLI prints."""

    imgref: str
    previous_digest: str | None
    new_digest: str | None
    version: str | None
    update_available: bool
    deployed: bool             # a new deployment was written
    staged: bool               # ... and it waits for a reboot (booted host)
    download_only: bool
    bytes_fetched: int
    layers_fetched: int
    layers_reused: int
    deployment: str | None     # "<checksum>.<serial>" of the new deployment
    rebooting: bool
    message: str

    def to_json(self) -> dict[str, Any]:
        """The `upgrade --check --json` object (bootc's open request #247)."""
        return {"image": self.imgref, "currentDigest": self.previous_digest,
                "availableDigest": self.new_digest if self.update_available else None,
                "version": self.version, "updateAvailable": self.update_available,
                "deployed": self.deployed, "staged": self.staged,
                "downloadOnly": self.download_only, "bytesFetched": self.bytes_fetched,
                "layersFetched": self.layers_fetched, "deployment": self.deployment}


@contextmanager
def quiet_logs(enabled: bool) -> Iterator[None]:
    logger = logging.getLogger("bootc_py")
    level = logger.level
    if enabled:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def _have_layers(sysroot: Sysroot, layers: tuple[Layer, ...]) -> frozenset[str]:
    have = set()
    for layer in layers:
        commit = sysroot.repo.rev_parse(layer_ref(layer))
        if commit and sysroot.repo.has_commit(commit):
            have.add(layer.diff_id)
    return frozenset(have)


def _with_tag(ref: ImageRef, tag: str | None) -> ImageRef:
    if tag is None:
        return ref
    if ref.transport is not Transport.REGISTRY and ref.transport is not Transport.OCI:
        raise UsageError(f"--tag needs a registry or oci: image, not {ref}")
    return ImageRef(ref.transport, ref.name, tag, None)


def _current(sysroot: Sysroot) -> tuple[tuple[Deployment, ...], Deployment]:
    deps = sysroot.deployments()
    current = current_of(deps)
    if current is None:
        raise UpdateError(f"{sysroot.root} has no deployment to update",
                          "install an image first (bootc-py install)")
    return deps, current


def _following(current: Deployment) -> Origin:
    if current.origin is None:
        raise UpdateError(f"deployment {current.key[:16]} names no container image to follow",
                          "use bootc-py switch IMAGE")
    return current.origin


def _digest_of(sysroot: Sysroot, dep: Deployment | None) -> str | None:
    if dep is None:
        return None
    return sysroot.commit_info(dep.checksum).manifest_digest or \
        (dep.origin.manifest_digest if dep.origin else None)


def _downloaded(sysroot: Sysroot, deps: tuple[Deployment, ...]) -> Deployment | None:
    """Offline --download-only leaves the new deployment second; this record names it."""
    record = sysroot.state_dir / DOWNLOADED_RECORD
    key = record.read_text().strip() if record.is_file() else ""
    return next((d for d in deps if d.key == key), None)


def _remove_blobs(image: Image, layers: tuple[Layer, ...]) -> None:
    cache = BlobCache(image.cache_dir)
    for layer in layers:
        cache.blob_path(layer.digest).unlink(missing_ok=True)


def _is_enospc(exc: BaseException) -> bool:
    """NoSpaceError (run() raises one for a program's ENOSPC), or an OSError's ENOSPC."""
    if isinstance(exc, NoSpaceError) or (isinstance(exc, OSError) and exc.errno == errno.ENOSPC):
        return True
    return says_no_space(str(exc))


def _remove_partial(sysroot: Sysroot) -> None:
    """After a failed import: drop its scratch trees and every object no deployment needs."""
    tmp = sysroot.repo.path / "tmp"
    for child in tmp.glob("*"):
        if child.name.startswith(("bootc-py-", "staging-")):
            shutil.rmtree(child, ignore_errors=True)
    try:
        sysroot.cleanup()
    except BootcPyError as exc:
        log.warning("cleanup after the failed import did not finish: %s", exc.message)


def apply_plan(sysroot: Sysroot, plan: UpdatePlan, ref: ImageRef, opts: PullOptions, *,
               stateroot: str, retain: bool = False) -> tuple[Image, Deployment]:
    """Fetch what the plan says, import, deploy, clean up, and let the bootloader follow."""
    # Boot counting: a bad greenboot.conf fails here, before anything is fetched.
    tries = health.boot_attempts(sysroot.root) if plan.stage else 0
    fetch = {x.diff_id for x in plan.fetch}
    image = pull(ref, opts, skip=lambda layer: layer.diff_id not in fetch)
    if image.manifest_digest != plan.new_digest:
        raise UpdateError(f"{ref} changed while updating ({dg.short(plan.new_digest)} -> "
                          f"{dg.short(image.manifest_digest)})", "run the upgrade again")
    try:
        imported = import_image(sysroot.repo, image, plan.imgref,
                                known_metadata=sysroot.commit_metadata,
                                known_commits=[d.checksum for d in sysroot.deployments()])
    except (BootcPyError, OSError) as exc:
        _remove_partial(sysroot)
        if _is_enospc(exc):
            raise NoSpaceError(f"the sysroot filled up while importing {plan.imgref}; the "
                               "partial import was removed and the current deployment is "
                               "untouched", "free space on /sysroot, then retry") from exc
        raise
    finally:
        if opts.cache_dir == hostops.cache_dir(sysroot):
            _remove_blobs(image, image.layers)  # now ostree objects: not kept twice
    origin = Origin(plan.imgref, image.manifest_digest)
    if plan.download_only and plan.stage:
        sysroot.lock_staged(True)  # before the deployment exists, so no reboot can apply it
    # A named step: its start line is what a power-cut test waits for to cut mid-staging.
    with steplog.step("deploy", "Staging the deployment" if plan.stage else "Deploying"):
        # The cleanup below prunes the repository; a second prune inside the deploy cost
        # about a third of it (0.37 s of 1.36 s with the sample image).
        dep = sysroot.deploy(imported.ref, origin, stateroot=stateroot, stage=plan.stage,
                             retain=retain, prune=retain,
                             not_as_default=plan.download_only and not plan.stage)
    record = sysroot.state_dir / DOWNLOADED_RECORD
    if plan.download_only and not plan.stage:
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(dep.key + "\n")
    else:
        record.unlink(missing_ok=True)
    if not plan.download_only and plan.stage:
        sysroot.lock_staged(False)
    if plan.stage:  # the new deployment gets N tries once finalized (a newer stage replaces)
        health.request_boot_count(sysroot.root / "boot", dep.checksum, tries)
    if not retain:
        sysroot.cleanup()
    if not plan.stage:
        hostops.sync_bootloader(sysroot)
    return image, dep


def _from_downloaded(sysroot: Sysroot, deps: tuple[Deployment, ...], apply: bool
                     ) -> UpgradeResult:
    """Let the downloaded deployment apply, without contacting the registry."""
    if sysroot.is_booted:
        staged = next((d for d in deps if d.staged), None)
        if staged is None:
            raise UpdateError("no downloaded update is staged", "run bootc-py upgrade "
                              "--download-only first")
        sysroot.lock_staged(False)
        dep, staged_flag = staged, True
    else:
        found = _downloaded(sysroot, deps)
        if found is None:
            raise UpdateError(f"no downloaded update in {sysroot.root}",
                              "run bootc-py upgrade --download-only first")
        sysroot.set_default(found)
        (sysroot.state_dir / DOWNLOADED_RECORD).unlink(missing_ok=True)
        hostops.sync_bootloader(sysroot)
        dep, staged_flag = found, False
    digest = _digest_of(sysroot, dep)
    how = "applies at the next reboot" if staged_flag else "is now the default"
    result = UpgradeResult(dep.origin.imgref if dep.origin else "?", None, digest, None, True,
                           True, staged_flag, False, 0, 0, 0, dep.key, apply,
                           f"The downloaded update {dg.short(digest or '?')} {how}.")
    if apply:
        hostops.reboot()
    return result


def update_to(sysroot: Sysroot, imgref: str, *, check: bool = False, apply: bool = False,
              download_only: bool = False, retain: bool = False,
              pull_options: PullOptions | None = None,
              skip: Callable[[str], str | None] | None = None) -> UpgradeResult:
    """Move the host to the image `imgref` (upgrade: the one it follows; switch: a new one).

    `skip(digest)` gives a reason not to stage that image (the automatic updater's list of
    images that fell back); then nothing is fetched or staged."""
    deps, current = _current(sysroot)
    ref = parse_imgref(imgref)
    imgref = str(ref)
    opts = hostops.pull_options(sysroot, current, pull_options)
    staged = next((d for d in deps if d.staged), None) or _downloaded(sysroot, deps)
    current_digest = _digest_of(sysroot, current)
    following = current.origin.imgref if current.origin else None
    resolved = resolve(ref, opts)  # manifest + config only
    plan = plan_update(
        imgref=imgref,
        current_digest=current_digest if following == imgref else None,
        staged_digest=_digest_of(sysroot, staged) if staged and staged.origin
        and staged.origin.imgref == imgref else None,
        new_digest=resolved.manifest_digest, version=resolved.labels.get(
            "org.opencontainers.image.version"), layers=resolved.layers,
        have_layers=_have_layers(sysroot, resolved.layers),
        free_bytes=_free_bytes(sysroot.root), stage=sysroot.is_booted,
        download_only=download_only)
    log.debug("update plan:\n%s", plan.render())
    why = skip(plan.new_digest) if skip is not None and plan.action is Action.DEPLOY else None
    if why is not None:
        return UpgradeResult(imgref, current_digest, plan.new_digest, plan.version, False,
                             False, False, download_only, 0, 0, 0, None, False,
                             f"Skipping {imgref} {dg.short(plan.new_digest)}: {why}.")
    available = plan.action is not Action.NONE
    base = UpgradeResult(imgref, current_digest, plan.new_digest, plan.version, available,
                         False, False, download_only, 0, 0, len(plan.reuse), None, False, "")
    if check:
        cached_update.write(sysroot, CachedUpdate(
            imgref, resolved.manifest_digest, plan.version, resolved.created,
            resolved.architecture or None,
            datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")) if available else None)
        if not available:
            return replace(base, message=f"No update available: {imgref} is still "
                           f"{dg.short(plan.new_digest)}.")
        what = "already staged" if plan.action is Action.ALREADY_STAGED else "available"
        return replace(base, message=f"Update {what}: {imgref} {dg.short(plan.new_digest)}"
                       + (f" (version {plan.version})" if plan.version else "") + ".")
    if plan.action is Action.NONE:
        return replace(base, message=f"No changes in {imgref} "
                       f"({dg.short(plan.new_digest)}): nothing to do.")
    if plan.action is Action.ALREADY_STAGED:
        msg = f"{imgref} {dg.short(plan.new_digest)} is already staged."
        if staged is not None and sysroot.staged_locked() and not download_only:
            sysroot.lock_staged(False)
            msg = f"{imgref} {dg.short(plan.new_digest)} was downloaded; it now applies at " \
                "the next reboot."
        result = replace(base, message=msg, staged=True)
        if apply:
            hostops.reboot()
            result = replace(result, rebooting=True)
        return result
    check_space(plan)
    image, dep = apply_plan(sysroot, plan, ref, opts, stateroot=current.stateroot,
                            retain=retain)
    cached_update.write(sysroot, None)
    if download_only:
        how = "downloaded; `bootc-py upgrade --from-downloaded` applies it"
    elif plan.stage:
        how = "staged; it applies at the next reboot"
    else:
        how = "deployed as the default"
    result = replace(base, deployed=True, staged=plan.stage, bytes_fetched=image.fetched,
                     layers_fetched=len(plan.fetch), deployment=dep.key,
                     message=f"{imgref} {dg.short(plan.new_digest)}"
                     + (f" (version {plan.version})" if plan.version else "")
                     + f" {how} ({human_size(image.fetched)} fetched).")
    if apply and not download_only:
        hostops.reboot()
        result = replace(result, rebooting=True)
    return result


def upgrade(sysroot: Path, *, check: bool = False, apply: bool = False, quiet: bool = False,
            download_only: bool = False, from_downloaded: bool = False, tag: str | None = None,
            pull_options: PullOptions | None = None,
            skip: Callable[[str], str | None] | None = None) -> UpgradeResult:
    """Upgrade the host at `sysroot` ("/" when booted) to the newest image it follows.

    check          fetch only the manifest and config; record the result as cachedUpdate
    apply          reboot afterwards when something was staged (booted host only)
    quiet          log only warnings and errors
    download_only  stage the update but keep a reboot from applying it (offline: deploy it
                   second, not as the default)
    from_downloaded  let a --download-only update apply, without contacting the registry
    tag            follow another tag of the same image from now on
    pull_options   TLS/auth/arch overrides (the cache is always the sysroot's own)
    skip           digest -> a reason not to stage it (see update_to)

    Raises UsageError, UpdateError (NoSpaceError), RegistryError, StoreError.
    """
    store = Sysroot(sysroot)
    store.require()
    hostops.check_apply(store, apply)
    if from_downloaded and (check or download_only or tag):
        raise UsageError("--from-downloaded does not go with --check, --download-only or --tag")
    if check and (apply or download_only):
        raise UsageError("--check only looks: it does not go with --apply or --download-only")
    with quiet_logs(quiet):
        deps, current = _current(store)
        if from_downloaded:
            return _from_downloaded(store, deps, apply)
        imgref = str(_with_tag(_following(current).ref, tag))
        return update_to(store, imgref, check=check, apply=apply, download_only=download_only,
                         pull_options=pull_options, skip=skip)
