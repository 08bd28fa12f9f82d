"""The one deployment API: an ostree sysroot, its deployments, and their origin files.

Layout (compatible with bootc/ostree): /ostree/repo (bare), deployments under
/ostree/deploy/<stateroot>/deploy/<checksum>.<serial> with `<checksum>.<serial>.origin` beside
each, the shared /ostree/deploy/<stateroot>/var, BLS entries in /boot/loader/entries.

The installer and the updater both go through `Sysroot`. Deploying uses the ostree CLI
(`admin deploy`, with the /etc 3-way merge and kargs of the merge deployment); what the 2022.7
CLI lacks (a new default, rollback, listing with flags) goes through libostree in
store/libostree_helper.py. A sysroot that is not the booted one ("offline", `--sysroot`) has
nothing booted and nothing staged: a new deployment becomes the default at once.
"""

from __future__ import annotations

import configparser
import importlib.util
import json
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bootc_py.errors import CommandError, StoreError, UsageError
from bootc_py.image.ref import ImageRef, Transport, parse_imgref
from bootc_py.run import run
from bootc_py.store.names import (
    IMAGE_REF_PREFIX,
    LAYER_REF_PREFIX,
    META_CONFIG,
    META_MANIFEST_DIGEST,
    META_VERSION,
)
from bootc_py.store.repo import OstreeRepo, escape_ref_component

log = logging.getLogger(__name__)

OSTREE_BOOTED = Path("/run/ostree-booted")
# libostree's finalize-staged skips a staged deployment while this file exists (2022.7 has it).
STAGED_LOCKED = Path("/run/ostree/staged-deployment-locked")
HELPER = Path(__file__).with_name("libostree_helper.py")
SYSTEM_PYTHON = "/usr/bin/python3"
STATE_DIR = "ostree/bootc-py"  # bootc-py's own state on the sysroot (cached update check)
HELPER_TIMEOUT = 300.0
DEPLOY_TIMEOUT = 1800.0

_REGISTRY_PREFIX = "ostree-unverified-registry:"
_IMAGE_PREFIX = "ostree-unverified-image:"


@dataclass(frozen=True)
class Origin:
    """What a deployment follows: the image reference (bootc-py spelling, e.g.
    docker://host/name:tag or oci:/dir:tag) and the manifest digest it was deployed from."""

    imgref: str
    manifest_digest: str | None = None

    @property
    def ref(self) -> ImageRef:
        return parse_imgref(self.imgref)

    def container_image_reference(self) -> str:
        """The origin's container-image-reference, spelled as ostree-ext/bootc spell it."""
        if self.imgref.startswith("docker://"):
            return _REGISTRY_PREFIX + self.imgref.removeprefix("docker://")
        return _IMAGE_PREFIX + self.imgref

    def render(self) -> str:
        text = ("[origin]\n"
                f"container-image-reference={self.container_image_reference()}\n"
                "\n[bootc-py]\n"
                f"imgref={self.imgref}\n")
        if self.manifest_digest:
            text += f"manifest-digest={self.manifest_digest}\n"
        return text

    @classmethod
    def parse(cls, text: str) -> Origin | None:
        """An origin file's content; None if it names no container image (e.g. a plain ostree
        refspec origin, or a file that is not an origin at all)."""
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read_string(text)
        except configparser.Error:
            return None
        imgref = parser.get("bootc-py", "imgref", fallback=None)
        digest = parser.get("bootc-py", "manifest-digest", fallback=None)
        if imgref is None:
            ref = parser.get("origin", "container-image-reference", fallback="")
            # bootc/ostree-ext also write ostree-remote-image:REMOTE:docker://... etc.
            if ref.startswith(_REGISTRY_PREFIX):
                imgref = "docker://" + ref.removeprefix(_REGISTRY_PREFIX)
            elif ref.startswith(_IMAGE_PREFIX):
                imgref = ref.removeprefix(_IMAGE_PREFIX)
            elif ref.startswith("ostree-image-signed:") or ref.startswith("ostree-remote-image:"):
                imgref = ref.split(":", 2)[-1] if ref.count(":") >= 2 else None
        if not imgref:
            return None
        return cls(imgref, digest or None)


@dataclass(frozen=True)
class Deployment:
    """One deployment, in boot order (`index` 0 is the default, or the staged one)."""

    sysroot: Path
    index: int
    stateroot: str
    checksum: str
    serial: int
    booted: bool = False
    staged: bool = False
    pinned: bool = False
    unlocked: str = "none"
    origin: Origin | None = None

    @property
    def key(self) -> str:
        return f"{self.checksum}.{self.serial}"

    @property
    def path(self) -> Path:
        return self.sysroot / "ostree/deploy" / self.stateroot / "deploy" / self.key

    @property
    def origin_path(self) -> Path:
        return self.path.with_name(self.key + ".origin")

    @property
    def var(self) -> Path:
        return self.sysroot / "ostree/deploy" / self.stateroot / "var"


@dataclass(frozen=True)
class CommitInfo:
    """What the importer recorded on an image commit."""

    manifest_digest: str | None
    version: str | None
    created: str | None
    architecture: str | None
    diff_ids: tuple[str, ...]


@dataclass(frozen=True)
class CleanupResult:
    refs_removed: tuple[str, ...]
    deployments_removed: int


def _gi_python() -> str:
    """A python that can import gi: this one (the booted host's) or Debian's."""
    if importlib.util.find_spec("gi") is not None:
        return sys.executable
    return SYSTEM_PYTHON


class Sysroot:
    """An ostree sysroot at `root` ("/" on the booted host, or a mounted disk's root)."""

    def __init__(self, root: Path, *, durable: bool = True) -> None:
        """`durable=False` only for a fresh install (see OstreeRepo.fsync)."""
        self.root = root
        self.repo = OstreeRepo(root / "ostree/repo", fsync=durable)
        # One helper run (a python importing gi: ~0.3 s) lists the deployments with their
        # commits' metadata; kept until this object changes the deployments (one verb's life).
        self._listing: tuple[Deployment, ...] | None = None
        self._commits: dict[str, dict[str, str]] = {}

    def __repr__(self) -> str:
        return f"Sysroot({str(self.root)!r})"

    @classmethod
    def init(cls, root: Path, stateroot: str) -> Sysroot:
        """`ostree admin init-fs` + `os-init`; ostree writes only BLS entries (bootc-py owns
        the bootloader configuration)."""
        run(["ostree", "admin", "init-fs", "--modern", str(root)], quiet=True)
        run(["ostree", "admin", "os-init", f"--sysroot={root}", stateroot], quiet=True)
        sysroot = cls(root, durable=False)
        sysroot.repo.config_set("sysroot.bootloader", "none")
        return sysroot

    # Reading.

    @property
    def is_booted(self) -> bool:
        """True when this is the running host's sysroot (then deployments can be staged)."""
        return OSTREE_BOOTED.exists() and self.root.resolve() == Path("/")

    def require(self) -> None:
        if not self.repo.exists():
            raise UsageError(f"{self.root} is not an ostree sysroot (no ostree/repo)",
                             "this host was not installed by bootc-py; use --sysroot for a "
                             "mounted one")

    def _helper(self, *args: str) -> dict[str, Any]:
        python = _gi_python()
        try:
            res = run([python, str(HELPER), args[0], str(self.root), *args[1:]], capture=True,
                      timeout=HELPER_TIMEOUT)
        except CommandError as exc:
            if "No module named 'gi'" in exc.stderr or "Namespace OSTree" in exc.stderr:
                raise StoreError("libostree's Python bindings are missing",
                                 "install python3-gi and gir1.2-ostree-1.0") from exc
            raise StoreError(f"libostree {args[0]} on {self.root} failed: "
                             f"{exc.stderr.strip().splitlines()[-1:] or ['?']}") from exc
        # libostree itself prints to stdout now and then ("Bootloader updated; bootconfig
        # swap: yes; ..." from set_default under systemd-boot): the answer is the last
        # JSON line the helper wrote.
        lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
        if not lines:
            raise StoreError(f"libostree {args[0]} on {self.root} gave no answer: "
                             f"{res.stdout.strip()[-200:]!r}")
        data: dict[str, Any] = json.loads(lines[-1])
        return data

    def _from_listing(self, data: dict[str, Any]) -> tuple[Deployment, ...]:
        for checksum, meta in (data.get("commits") or {}).items():
            if isinstance(meta, dict):
                self._commits[str(checksum)] = {str(k): str(v) for k, v in meta.items()}
        out: list[Deployment] = []
        for d in data["deployments"]:
            dep = Deployment(self.root, int(d["index"]), str(d["stateroot"]), str(d["checksum"]),
                             int(d["serial"]), booted=bool(d["booted"]),
                             staged=bool(d["staged"]), pinned=bool(d["pinned"]),
                             unlocked=str(d.get("unlocked", "none")))
            origin = None
            if dep.origin_path.is_file():
                origin = Origin.parse(dep.origin_path.read_text())
            elif d.get("origin"):
                origin = Origin.parse(str(d["origin"]))  # staged: libostree holds it
            if origin is None and dep.staged:
                origin = self._staged_origin(dep)
            out.append(Deployment(dep.sysroot, dep.index, dep.stateroot, dep.checksum,
                                  dep.serial, dep.booted, dep.staged, dep.pinned, dep.unlocked,
                                  origin))
        self._listing = tuple(out)
        return self._listing

    def _staged_origin(self, dep: Deployment) -> Origin | None:
        # A staged deployment's origin lives in our record until finalization writes it.
        record = self.state_dir / "staged-origin"
        if record.is_file():
            text = record.read_text()
            key, _, body = text.partition("\n")
            if key == dep.key:
                return Origin.parse(body)
        return None

    def deployments(self) -> tuple[Deployment, ...]:
        """All deployments in boot order (a staged one first)."""
        self.require()
        if self._listing is None:
            self._from_listing(self._helper("list"))
        assert self._listing is not None
        return self._listing

    def _changed(self) -> None:
        """The deployments changed on disk: the next reading lists them again."""
        self._listing = None

    def booted(self) -> Deployment | None:
        return next((d for d in self.deployments() if d.booted), None)

    def staged(self) -> Deployment | None:
        return next((d for d in self.deployments() if d.staged), None)

    def default(self) -> Deployment | None:
        """What the next boot starts, ignoring a staged deployment."""
        return next((d for d in self.deployments() if not d.staged), None)

    def rollback(self) -> Deployment | None:
        """The deployment `rollback` would switch to: booted host, the first non-staged one
        that is not booted; offline, the one after the default."""
        return rollback_of(self.deployments())

    def current(self) -> Deployment | None:
        """The deployment updates start from: the booted one, offline the default."""
        return current_of(self.deployments())

    def commit_metadata(self, checksum: str, key: str) -> str | None:
        """A commit's string metadata value (None if absent), from the listing if it has it."""
        known = self._commits.get(checksum)
        if known is not None:  # from the listing: no `ostree show`
            return known.get(key)
        return self.repo.metadata(checksum, key)

    def commit_info(self, checksum: str) -> CommitInfo:
        digest = self.commit_metadata(checksum, META_MANIFEST_DIGEST)
        version = self.commit_metadata(checksum, META_VERSION)
        created = arch = None
        diff_ids: tuple[str, ...] = ()
        config_text = self.commit_metadata(checksum, META_CONFIG)
        if config_text:
            try:
                config = json.loads(config_text)
                created, arch = config.get("created"), config.get("architecture")
                diff_ids = tuple(str(x) for x in (config.get("rootfs") or {}).get("diff_ids", []))
            except ValueError:
                pass
        return CommitInfo(digest, version, created, arch, diff_ids)

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR

    # Writing.

    def deploy(self, ref: str, origin: Origin, *, stateroot: str,
               kargs: Sequence[str] | None = None, stage: bool = False, retain: bool = False,
               prune: bool = True, not_as_default: bool = False) -> Deployment:
        """Deploy commit or ref `ref` with `origin`.

        `kargs=None` keeps the merge deployment's kernel arguments (an update); a list
        replaces them (an install; repeated keys like console= stay in order). /etc gets
        ostree's 3-way merge from the merge deployment. `stage` (booted host only) defers
        writing the boot entries to shutdown; otherwise the new deployment is the default at
        once (unless `not_as_default`). Older deployments beyond the merge one are removed
        unless `retain`.
        """
        if stage and not self.is_booted:
            raise UsageError(f"cannot stage a deployment in {self.root}: it is not the booted "
                             "sysroot", "without staging the new deployment is the default")
        origin_file = self.root / "ostree" / f".bootc-py-origin-{os.getpid()}"
        origin_file.write_text(origin.render())
        argv = ["ostree", "admin", "deploy", f"--sysroot={self.root}", f"--os={stateroot}",
                f"--origin-file={origin_file}"]
        if kargs is not None:
            argv += ["--karg-none", *[f"--karg-append={k}" for k in kargs]]
        if stage:
            argv.append("--stage")
        if retain:
            argv.append("--retain")
        if not prune:
            argv.append("--no-prune")  # a fresh repository has nothing to prune
        if not_as_default:
            argv += ["--not-as-default", "--retain"]
        self._changed()
        try:
            run([*argv, ref], quiet=True, timeout=DEPLOY_TIMEOUT)
        except CommandError as exc:
            raise StoreError(f"ostree could not deploy {ref}: "
                             f"{exc.stderr.strip()[-300:]}") from exc
        finally:
            origin_file.unlink(missing_ok=True)
        commit = self.repo.rev_parse(ref) or ref
        candidates = [d for d in self.deployments()
                      if d.checksum == commit and d.stateroot == stateroot]
        if stage:
            candidates = [d for d in candidates if d.staged]
        if not candidates:
            raise StoreError(f"ostree deployed {ref} but no deployment of {commit[:12]} appeared")
        dep = max(candidates, key=lambda d: d.serial)
        if stage:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            (self.state_dir / "staged-origin").write_text(f"{dep.key}\n{origin.render()}")
            dep = Deployment(dep.sysroot, dep.index, dep.stateroot, dep.checksum, dep.serial,
                             dep.booted, dep.staged, dep.pinned, dep.unlocked, origin)
        return dep

    def write_order(self, order: Sequence[Deployment]) -> tuple[Deployment, ...]:
        """Make `order` the boot order (the first is the default); deployments left out,
        a staged one included, are removed."""
        self._changed()
        data = self._helper("write-order", *[d.key for d in order])
        return self._from_listing(data)

    def set_default(self, dep: Deployment) -> tuple[Deployment, ...]:
        """`dep` becomes the default; the one booted (offline: the old default) comes next, so
        it is the rollback. A staged deployment is dropped."""
        deps = [d for d in self.deployments() if not d.staged]
        if not any(d.key == dep.key for d in deps):
            raise StoreError(f"deployment {dep.key[:16]} is not in {self.root}")
        current = current_of(tuple(deps))
        order = [d for d in deps if d.key == dep.key]
        order += [d for d in deps if current is not None and d.key == current.key
                  and d.key != dep.key]
        order += [d for d in deps if d.key not in {x.key for x in order}]
        return self.write_order(order)

    def drop_staged(self) -> bool:
        """Remove a staged deployment (keeping the others in order); False if none."""
        deps = self.deployments()
        if not any(d.staged for d in deps):
            return False
        self.write_order([d for d in deps if not d.staged])
        (self.state_dir / "staged-origin").unlink(missing_ok=True)
        return True

    def pin(self, dep: Deployment, pinned: bool = True) -> None:
        """A pinned deployment is never removed by deploys or cleanup."""
        argv = ["ostree", "admin", "pin", f"--sysroot={self.root}"]
        if not pinned:
            argv.append("--unpin")
        self._changed()
        run([*argv, str(dep.index)], quiet=True)

    def set_origin(self, dep: Deployment, origin: Origin) -> None:
        """Rewrite a deployment's origin (switch --mutate-in-place), atomically."""
        tmp = dep.origin_path.with_name(dep.origin_path.name + ".tmp")
        tmp.write_text(origin.render())
        self._changed()
        os.replace(tmp, dep.origin_path)

    def lock_staged(self, locked: bool) -> None:
        """While locked, a reboot does not apply the staged deployment (download-only)."""
        if locked:
            STAGED_LOCKED.parent.mkdir(parents=True, exist_ok=True)
            STAGED_LOCKED.touch()
        else:
            STAGED_LOCKED.unlink(missing_ok=True)

    def staged_locked(self) -> bool:
        return self.is_booted and STAGED_LOCKED.exists()

    def unlock_usr(self) -> None:
        """A transient writable /usr (an overlay, gone at the next boot)."""
        if not self.is_booted:
            raise UsageError("usr-overlay needs the booted host", "run it on the host itself")
        self._changed()
        try:
            run(["ostree", "admin", "unlock"], quiet=True)
        except CommandError as exc:
            raise StoreError(f"ostree admin unlock failed: {exc.stderr.strip()[-300:]}") \
                from exc

    def cleanup(self) -> CleanupResult:
        """Drop image and layer commits no deployment needs, then let ostree remove what is
        unreferenced (old deployment dirs, their boot files, and the repository's objects)."""
        deps = self.deployments()
        kept_commits = {d.checksum for d in deps}
        needed_layers: set[str] = set()
        for checksum in kept_commits:
            needed_layers.update(escape_ref_component(x)
                                 for x in self.commit_info(checksum).diff_ids)
        removed: list[str] = []
        for ref in self.repo.refs(IMAGE_REF_PREFIX):
            full = ref if ref.startswith(IMAGE_REF_PREFIX) else f"{IMAGE_REF_PREFIX}/{ref}"
            if self.repo.rev_parse(full) not in kept_commits:
                removed.append(full)
        for ref in self.repo.refs(LAYER_REF_PREFIX):
            full = ref if ref.startswith(LAYER_REF_PREFIX) else f"{LAYER_REF_PREFIX}/{ref}"
            if full.rsplit("/", 1)[-1] not in needed_layers:
                removed.append(full)
        for ref in removed:
            run(["ostree", f"--repo={self.repo.path}", "refs", "--delete", ref], quiet=True)
        before = len(list((self.root / "ostree/deploy").glob("*/deploy/*.origin")))
        self._changed()
        try:
            # Prunes the repository too, keeping every deployment's commit.
            run(["ostree", "admin", "cleanup", f"--sysroot={self.root}"], quiet=True,
                timeout=DEPLOY_TIMEOUT)
        except CommandError as exc:
            raise StoreError(f"ostree admin cleanup failed: {exc.stderr.strip()[-300:]}") \
                from exc
        after = len(list((self.root / "ostree/deploy").glob("*/deploy/*.origin")))
        if removed:
            log.info("cleanup: removed %d unused image/layer ref(s)", len(removed))
        return CleanupResult(tuple(removed), max(0, before - after))


def current_of(deps: Sequence[Deployment]) -> Deployment | None:
    booted = next((d for d in deps if d.booted), None)
    return booted or next((d for d in deps if not d.staged), None)


def rollback_of(deps: Sequence[Deployment]) -> Deployment | None:
    current = current_of(deps)
    return next((d for d in deps
                 if not d.staged and current is not None and d.key != current.key), None)


def image_reference(imgref: str) -> dict[str, str]:
    """bootc's ImageReference: {"image": "quay.io/x:tag", "transport": "registry"}."""
    ref = parse_imgref(imgref)
    text = str(ref)
    if ref.transport is Transport.REGISTRY:
        image = text.removeprefix("docker://")
    else:
        image = text.removeprefix(f"{ref.transport.value}:")
    return {"image": image, "transport": ref.transport.value}
