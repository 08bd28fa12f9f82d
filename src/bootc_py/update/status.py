"""Host status: a pure view of store/sysroot in bootc's schema (org.containers.bootc/v1
BootcHost), rendered human-readable, as YAML or as JSON.

`read_status(sysroot)` gathers (deployments in boot order, each commit's recorded manifest
digest, version and image config, the last update check); `HostStatus` only presents them.
Works on the booted host (sysroot "/") and offline on a mounted sysroot (`--sysroot`), where
nothing is "booted": the default deployment stands in for the booted one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from bootc_py.store.sysroot import Deployment, Sysroot, current_of, image_reference
from bootc_py.update import cached_update, health, yaml_out
from bootc_py.update.cached_update import CachedUpdate
from bootc_py.update.health import BadImage, HealthVerdict

API_VERSION = "org.containers.bootc/v1"
# Extension keys (bootc ignores fields it does not know; present only when there is a record).
HEALTH_KEY = "bootc-py.health"
BAD_IMAGES_KEY = "bootc-py.badImages"


class Format(StrEnum):
    HUMAN = "humanreadable"
    YAML = "yaml"
    JSON = "json"


@dataclass(frozen=True)
class DeploymentStatus:
    index: int
    stateroot: str
    checksum: str
    serial: int
    booted: bool
    staged: bool
    pinned: bool
    imgref: str | None
    manifest_digest: str | None
    version: str | None
    timestamp: str | None
    architecture: str | None
    cached_update: CachedUpdate | None = None
    download_only: bool = False
    health: HealthVerdict | None = None  # the last health verdict recorded for it

    def image_spec(self) -> dict[str, Any] | None:
        return image_reference(self.imgref) if self.imgref else None

    def health_bootc(self) -> dict[str, Any] | None:
        if self.health is None:
            return None
        return {"verdict": self.health.verdict.value, "checkedAt": self.health.checked_at,
                "failed": [f"{r.name}: {r.detail}" for r in self.health.failed_required],
                "warnings": [f"{r.name}: {r.detail}" for r in self.health.warnings],
                "checks": len(self.health.results)}

    def to_bootc(self) -> dict[str, Any]:
        image = None
        spec = self.image_spec()
        if spec is not None:
            image = {"image": spec, "version": self.version, "timestamp": self.timestamp,
                     "imageDigest": self.manifest_digest, "architecture": self.architecture}
        extra = {HEALTH_KEY: self.health_bootc()} if self.health is not None else {}
        return {
            "image": image,
            "cachedUpdate": self.cached_update.to_bootc() if self.cached_update else None,
            "incompatible": False, "pinned": self.pinned, "downloadOnly": self.download_only,
            "store": "ostreeContainer",
            "ostree": {"checksum": self.checksum, "deploySerial": self.serial,
                       "stateroot": self.stateroot},
            **extra,
        }


@dataclass(frozen=True)
class HostStatus:
    sysroot: Path
    deployments: tuple[DeploymentStatus, ...]
    is_booted: bool
    bad_images: tuple[BadImage, ...] = ()  # images that fell back here (auto-updates skip)

    @property
    def booted(self) -> DeploymentStatus | None:
        return next((d for d in self.deployments if d.booted), None)

    @property
    def staged(self) -> DeploymentStatus | None:
        return next((d for d in self.deployments if d.staged), None)

    @property
    def default(self) -> DeploymentStatus | None:
        return next((d for d in self.deployments if not d.staged), None)

    @property
    def current(self) -> DeploymentStatus | None:
        """The booted deployment; offline, the default."""
        return self.booted if self.is_booted else self.default

    @property
    def rollback(self) -> DeploymentStatus | None:
        current = self.current
        return next((d for d in self.deployments
                     if not d.staged and current is not None and d is not current), None)

    @property
    def rollback_queued(self) -> bool:
        booted, default = self.booted, self.default
        return booted is not None and default is not None and booted is not default

    def to_bootc(self, *, booted_only: bool = False) -> dict[str, Any]:
        spec_source = self.current
        spec_image = spec_source.image_spec() if spec_source else None
        current = self.booted if self.is_booted else self.default
        staged = None if booted_only else self.staged
        rollback = None if booted_only else self.rollback
        data: dict[str, Any] = {
            "apiVersion": API_VERSION,
            "kind": "BootcHost",
            "metadata": {"name": "host"},
            "spec": {"image": spec_image,
                     "bootOrder": "rollback" if self.rollback_queued else "default"},
            "status": {
                "staged": staged.to_bootc() if staged else None,
                "booted": current.to_bootc() if current and self.is_booted else None,
                "rollback": rollback.to_bootc() if rollback else None,
                "rollbackQueued": self.rollback_queued,
                "type": "bootcHost" if self.deployments else None,
            },
        }
        if self.bad_images:
            data["status"][BAD_IMAGES_KEY] = [b.to_bootc() for b in self.bad_images]
        if not self.is_booted:
            # Offline (not booted from this sysroot): bootc has no words for it, so list the
            # deployments in boot order as an extension.
            data["status"]["deployments"] = [
                {**d.to_bootc(), "default": d is self.default} for d in self.deployments
                if not booted_only or d is self.default]
        return data

    def render(self, fmt: Format = Format.HUMAN, *, verbose: bool = False,
               booted_only: bool = False) -> str:
        if fmt is Format.JSON:
            return json.dumps(self.to_bootc(booted_only=booted_only), indent=2) + "\n"
        if fmt is Format.YAML:
            return yaml_out.dump(self.to_bootc(booted_only=booted_only))
        return self.render_human(verbose=verbose, booted_only=booted_only)

    def render_human(self, *, verbose: bool = False, booted_only: bool = False) -> str:
        """Like bootc's: one block per staged / booted / rollback image."""
        if not self.deployments:
            return "No deployments.\n"
        blocks = [("Staged image", self.staged, " "),
                  ("Booted image" if self.is_booted else "Default image", self.current, "●"),
                  ("Rollback image", self.rollback, " ")]
        lines: list[str] = []
        for label, dep, marker in blocks:
            if dep is None or (booted_only and dep is not self.current):
                continue
            lines.append(f"{marker} {label}: {dep.imgref or '(no image reference)'}")
            lines.append(f"        Digest: {dep.manifest_digest or '-'}")
            version = dep.version or "-"
            if dep.timestamp:
                version += f" ({dep.timestamp})"
            lines.append(f"       Version: {version}")
            if dep.staged and dep.download_only:
                lines.append("         State: downloaded only (upgrade --from-downloaded "
                             "applies it)")
            if verbose or dep.pinned:
                lines.append(f"    Deployment: {dep.stateroot} {dep.checksum[:12]}.{dep.serial}"
                             + ("  (pinned)" if dep.pinned else ""))
            if dep.health is not None:
                lines.append(f"        Health: {dep.health.summary()}")
            if dep.cached_update is not None:
                update = dep.cached_update
                lines.append(f"  Update found: {update.version or '-'} "
                             f"({update.manifest_digest})")
            lines.append("")
        if self.rollback_queued and not booted_only:
            lines.append("Rollback is queued: the next boot starts the rollback image.")
        if self.bad_images and not booted_only:
            lines.append("Fell back (automatic updates skip these until a newer image):")
            lines += [f"  {b.describe()}" for b in self.bad_images]
        return "\n".join(lines).rstrip() + "\n"


def _status_of(sysroot: Sysroot, dep: Deployment, cached: CachedUpdate | None,
               locked: bool) -> DeploymentStatus:
    info = sysroot.commit_info(dep.checksum)
    origin = dep.origin
    digest = info.manifest_digest or (origin.manifest_digest if origin else None)
    imgref = origin.imgref if origin else None
    relevant = (cached if cached is not None and imgref == cached.imgref
                and cached.manifest_digest != digest else None)
    return DeploymentStatus(
        index=dep.index, stateroot=dep.stateroot, checksum=dep.checksum, serial=dep.serial,
        booted=dep.booted, staged=dep.staged, pinned=dep.pinned, imgref=imgref,
        manifest_digest=digest, version=info.version, timestamp=info.created,
        architecture=info.architecture, cached_update=relevant,
        download_only=dep.staged and locked,
        # /var is the stateroot's: ostree/deploy/<stateroot>/var, booted or not.
        health=health.read_verdict(dep.checksum, dep.var.parent))


def read_status(root: Path = Path("/")) -> HostStatus:
    sysroot = Sysroot(root)
    deps = sysroot.deployments()
    cached = cached_update.read(sysroot)
    current = current_of(deps)
    locked = sysroot.staged_locked()
    statuses = tuple(
        _status_of(sysroot, d, cached if current is not None and d.key == current.key else None,
                   locked)
        for d in deps)
    current_var = current.var.parent if current is not None else root
    return HostStatus(root, statuses, sysroot.is_booted,
                      tuple(health.read_bad_images(current_var)))
