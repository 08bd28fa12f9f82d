"""Host status computed from disk alone, in bootc's schema (org.containers.bootc/v1 BootcHost).

Deployments and their order come from `ostree admin status`; each deployment's origin file
names the image it follows, and its commit's metadata (written at import) carries the manifest
digest, version and image config. Works on the booted host (sysroot "/") and offline on a
mounted sysroot (`--sysroot`), where nothing is "booted".
"""

from __future__ import annotations

import configparser
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bootc_py.errors import BootcPyError, StoreError
from bootc_py.image.ref import Transport, parse_imgref
from bootc_py.run import run
from bootc_py.store.importer import META_CONFIG, META_MANIFEST_DIGEST, META_VERSION
from bootc_py.store.repo import OstreeRepo

API_VERSION = "org.containers.bootc/v1"
_LINE = re.compile(r"^(?P<star>[* ]) (?P<stateroot>\S+) (?P<csum>[0-9a-f]{64})\.(?P<serial>\d+)"
                   r"(?: \((?P<flags>[^)]*)\))?\s*$")


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

    def image_spec(self) -> dict[str, Any] | None:
        if not self.imgref:
            return None
        return image_reference(self.imgref)

    def to_bootc(self) -> dict[str, Any]:
        image = None
        spec = self.image_spec()
        if spec is not None:
            image = {"image": spec, "version": self.version, "timestamp": self.timestamp,
                     "imageDigest": self.manifest_digest, "architecture": self.architecture}
        return {
            "image": image, "cachedUpdate": None, "incompatible": False, "pinned": self.pinned,
            "store": "ostreeContainer",
            "ostree": {"checksum": self.checksum, "deploySerial": self.serial,
                       "stateroot": self.stateroot},
        }


def image_reference(imgref: str) -> dict[str, Any]:
    """bootc's ImageReference: {"image": "quay.io/x:tag", "transport": "registry"}."""
    ref = parse_imgref(imgref)
    text = str(ref)
    if ref.transport is Transport.REGISTRY:
        image = text.removeprefix("docker://")
    else:
        image = text.removeprefix(f"{ref.transport.value}:")
    return {"image": image, "transport": ref.transport.value}


@dataclass(frozen=True)
class HostStatus:
    sysroot: Path
    deployments: tuple[DeploymentStatus, ...]
    is_booted: bool

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
    def rollback(self) -> DeploymentStatus | None:
        """The non-staged deployment that is not the booted one (offline: not the default)."""
        current = self.booted if self.is_booted else self.default
        return next((d for d in self.deployments
                     if not d.staged and current is not None and d is not current), None)

    @property
    def rollback_queued(self) -> bool:
        booted, default = self.booted, self.default
        return booted is not None and default is not None and booted is not default

    def to_bootc(self) -> dict[str, Any]:
        spec_source = self.booted or self.default
        spec_image = spec_source.image_spec() if spec_source else None
        data: dict[str, Any] = {
            "apiVersion": API_VERSION,
            "kind": "BootcHost",
            "metadata": {"name": "host"},
            "spec": {"image": spec_image,
                     "bootOrder": "rollback" if self.rollback_queued else "default"},
            "status": {
                "staged": self.staged.to_bootc() if self.staged else None,
                "booted": self.booted.to_bootc() if self.booted else None,
                "rollback": self.rollback.to_bootc() if self.rollback else None,
                "rollbackQueued": self.rollback_queued,
                "type": "bootcHost" if self.deployments else None,
            },
        }
        if not self.is_booted:
            # Offline (not booted from this sysroot): bootc has no words for it, so list the
            # deployments in boot order as an extension.
            data["status"]["deployments"] = [
                {**d.to_bootc(), "default": d is self.default} for d in self.deployments]
        return data

    def render(self) -> str:
        if not self.deployments:
            return "No deployments.\n"
        lines: list[str] = []
        for label, dep, marker in (("Staged image", self.staged, " "),
                                   ("Booted image" if self.is_booted else "Default image",
                                    self.booted if self.is_booted else self.default, "●"),
                                   ("Rollback image", self.rollback, " ")):
            if dep is None:
                continue
            lines.append(f"{marker} {label}: {dep.imgref or '(no image reference)'}")
            lines.append(f"        Digest: {dep.manifest_digest or '-'}")
            version = dep.version or "-"
            if dep.timestamp:
                version += f" ({dep.timestamp})"
            lines.append(f"       Version: {version}")
            lines.append(f"    Deployment: {dep.stateroot} {dep.checksum[:12]}.{dep.serial}"
                         + ("  (pinned)" if dep.pinned else ""))
            lines.append("")
        if self.rollback_queued:
            lines.append("Rollback is queued: the next boot starts the rollback image.")
        return "\n".join(lines).rstrip() + "\n"


def _origin(path: Path) -> tuple[str | None, str | None]:
    if not path.is_file():
        return None, None
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(path.read_text())
    except configparser.Error:
        return None, None
    imgref = parser.get("bootc-py", "imgref", fallback=None)
    digest = parser.get("bootc-py", "manifest-digest", fallback=None)
    if imgref is None:
        ref = parser.get("origin", "container-image-reference", fallback=None)
        if ref:
            for prefix, transport in (("ostree-unverified-registry:", "docker://"),
                                      ("ostree-unverified-image:", "")):
                if ref.startswith(prefix):
                    imgref = transport + ref[len(prefix):]
    return imgref, digest


def _commit_info(repo: OstreeRepo, checksum: str) -> tuple[str | None, str | None, str | None,
                                                             str | None]:
    """(manifest digest, version, created timestamp, architecture) from commit metadata."""
    digest = repo.metadata(checksum, META_MANIFEST_DIGEST)
    version = repo.metadata(checksum, META_VERSION)
    created = arch = None
    config_text = repo.metadata(checksum, META_CONFIG)
    if config_text:
        try:
            config = json.loads(config_text)
            created, arch = config.get("created"), config.get("architecture")
        except ValueError:
            pass
    return digest, version, created, arch


def read_status(sysroot: Path = Path("/")) -> HostStatus:
    if not (sysroot / "ostree/repo").is_dir() and not (sysroot / "sysroot/ostree/repo").is_dir():
        raise BootcPyError(f"{sysroot} is not an ostree sysroot (no ostree/repo)",
                           "this host was not installed by bootc-py; use --sysroot for a "
                           "mounted one")
    res = run(["ostree", "admin", "status", f"--sysroot={sysroot}"], check=False, capture=True)
    if res.returncode != 0:
        raise StoreError(f"cannot read deployments: {res.stderr.strip()[-200:]}")
    repo = OstreeRepo(sysroot / "ostree/repo")
    is_booted = Path("/run/ostree-booted").exists() and sysroot == Path("/")
    deployments: list[DeploymentStatus] = []
    lines = res.stdout.splitlines()
    for i, line in enumerate(lines):
        match = _LINE.match(line)
        if not match:
            continue
        flags = set((match.group("flags") or "").split(", "))
        detail = []
        for follow in lines[i + 1:]:
            if _LINE.match(follow):
                break
            detail.append(follow.strip())
        checksum, serial = match.group("csum"), int(match.group("serial"))
        stateroot = match.group("stateroot")
        imgref, origin_digest = _origin(
            sysroot / "ostree/deploy" / stateroot / "deploy" / f"{checksum}.{serial}.origin")
        digest, version, created, arch = _commit_info(repo, checksum)
        deployments.append(DeploymentStatus(
            index=len(deployments), stateroot=stateroot, checksum=checksum, serial=serial,
            booted=match.group("star") == "*", staged="staged" in flags,
            pinned=any(d.lower().startswith("pinned: yes") for d in detail),
            imgref=imgref, manifest_digest=digest or origin_digest, version=version,
            timestamp=created, architecture=arch))
    return HostStatus(sysroot, tuple(deployments), is_booted)
