"""Import a pulled image into an ostree repository.

Each layer becomes its own commit (ref `bootc-py/layer/<diff_id>`), with its whiteouts kept as
Docker-style `.wh.` files; the OS commit is then a union checkout of the layer commits in order
(ostree applies the whiteouts), rearranged into the ostree layout and committed again. Both
checkout and commit work through hardlinks, so a layer already in the repository costs nothing:
importing v2 after v1 costs only the layers that changed.

Two shortcuts skip the whole-tree checkout, each only where it builds the very tree the full
assembly would: the same image under another name (a `switch` to another tag) commits its new
metadata over the known root tree, and an update whose new top layers are simple lays them over
the known OS tree of the image it shares its lower layers with (incremental.py).
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bootc_py import log as steplog
from bootc_py.image.flatten import WhiteoutMode, apply_layer
from bootc_py.image.source import Image, Layer
from bootc_py.store import incremental
from bootc_py.store.layout import KernelInfo, to_ostree_layout
from bootc_py.store.names import (
    IMAGE_REF_PREFIX,
    LAYER_REF_PREFIX,
    META_BLOB,
    META_CONFIG,
    META_DIFF_ID,
    META_IMGREF,
    META_MANIFEST,
    META_MANIFEST_DIGEST,
    META_VERSION,
    VERSION_LABEL,
)
from bootc_py.store.repo import OstreeRepo, escape_ref_component

log = logging.getLogger(__name__)


def layer_ref(layer: Layer) -> str:
    return f"{LAYER_REF_PREFIX}/{escape_ref_component(layer.diff_id)}"


def image_ref(imgref: str) -> str:
    return f"{IMAGE_REF_PREFIX}/{escape_ref_component(imgref)}"


@dataclass(frozen=True)
class ImportResult:
    commit: str
    ref: str
    kernel: KernelInfo | None
    layers_imported: int
    layers_reused: int
    reused_commit: bool
    # The commit whose root tree this one shares (the same image imported under another name).
    tree_from: str | None = None
    # The OS commit whose tree this one's new top layers were laid over (incremental.py).
    over: str | None = None


@contextmanager
def _scratch(repo: OstreeRepo, prefix: str) -> Iterator[Path]:
    """A temp dir on the repository's filesystem, so hardlinks into it work."""
    tmp_root = repo.path / "tmp"
    tmp_root.mkdir(exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=tmp_root))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _lower_file(repo: OstreeRepo, lower: list[str], scratch: Path, rel: str) -> Path | None:
    """A private copy of `rel` from the topmost lower layer commit holding it as a regular
    file (for a hard link that crosses layers)."""
    for commit in reversed(lower):
        if repo.file_type(commit, "/" + rel) == "-":
            dest = Path(tempfile.mkdtemp(prefix="link-", dir=scratch))
            dest.rmdir()
            repo.checkout(commit, dest, subpath="/" + rel, copy=True)
            return dest / Path(rel).name
    return None


def _import_layer(repo: OstreeRepo, image: Image, layer: Layer, index: int,
                  progress: steplog.ByteProgress | None = None,
                  lower: list[str] | None = None) -> str:
    with _scratch(repo, "bootc-py-layer-") as tree, _scratch(repo, "bootc-py-links-") as links:
        # mkdtemp makes 0700; the committed root must be 0755 unless the layer says otherwise,
        # or every non-root service (dbus...) is locked out of the booted system.
        tree.chmod(0o755)
        result = apply_layer(image.blob_path(layer.digest), layer.media_type, tree,
                             whiteouts=WhiteoutMode.RECORD, skip_special=True,
                             progress=progress,
                             link_source=lambda rel: _lower_file(repo, lower or [], links, rel))
        # Keep whiteouts as Docker-style marker files; `ostree checkout --whiteouts` applies
        # them against the layers below when the OS tree is assembled.
        for rel in result.whiteouts:
            marker = tree / Path(rel).parent / f".wh.{Path(rel).name}"
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
        for rel in result.opaque_dirs:
            opaque = tree / rel
            opaque.mkdir(parents=True, exist_ok=True)
            (opaque / ".wh..wh..opq").touch()
        return repo.commit(
            tree, branch=layer_ref(layer), subject=f"layer {index}: {layer.diff_id}",
            metadata={META_DIFF_ID: layer.diff_id, META_BLOB: layer.digest}, consume=True)


# (commit, key) -> a commit's string metadata value, or None.
MetadataReader = Callable[[str, str], "str | None"]


def _reusable(repo: OstreeRepo, ref: str, manifest_digest: str,
              metadata: MetadataReader | None) -> str | None:
    commit = repo.rev_parse(ref)
    read = metadata or repo.metadata
    if commit and read(commit, META_MANIFEST_DIGEST) == manifest_digest:
        return commit
    return None


def _candidates(repo: OstreeRepo, known_commits: Iterable[str]) -> list[str]:
    """OS commits the repository has: the caller's (deployments) and the image refs'."""
    candidates = list(dict.fromkeys(known_commits))
    for name in repo.refs(IMAGE_REF_PREFIX):
        full = name if name.startswith(IMAGE_REF_PREFIX) else f"{IMAGE_REF_PREFIX}/{name}"
        commit = repo.rev_parse(full)
        if commit and commit not in candidates:
            candidates.append(commit)
    return [c for c in candidates if repo.has_commit(c)]


def _layer_commit(repo: OstreeRepo, diff_id: str) -> str | None:
    commit = repo.rev_parse(f"{LAYER_REF_PREFIX}/{escape_ref_component(diff_id)}")
    return commit if commit and repo.has_commit(commit) else None


def _same_image(repo: OstreeRepo, manifest_digest: str, metadata: MetadataReader | None,
                candidates: list[str]) -> str | None:
    """A commit of this very image under another name (another tag, or a deployment whose
    ref moved on): its root tree is what assembling the layers again would produce."""
    read = metadata or repo.metadata
    return next((c for c in candidates if read(c, META_MANIFEST_DIGEST) == manifest_digest),
                None)


def _metadata(image: Image, imgref: str) -> dict[str, str]:
    metadata = {
        META_MANIFEST_DIGEST: image.manifest_digest,
        META_MANIFEST: json.dumps(image.manifest, separators=(",", ":")),
        META_CONFIG: json.dumps(image.config, separators=(",", ":")),
        META_IMGREF: imgref,
    }
    version = image.labels.get(VERSION_LABEL)
    if version:
        metadata[META_VERSION] = version
    return metadata


def import_image(repo: OstreeRepo, image: Image, imgref: str, *,
                 known_metadata: MetadataReader | None = None,
                 known_commits: Iterable[str] = ()) -> ImportResult:
    """Import `image` (already pulled) and commit its OS tree under the ref for `imgref`.

    `known_metadata` reads a commit's metadata where the caller already knows it (the sysroot's
    listing has every deployment's), sparing an `ostree show`; `known_commits` (the
    deployments) may hold this image under another name."""
    ref = image_ref(imgref)
    existing = _reusable(repo, ref, image.manifest_digest, known_metadata)
    if existing:
        log.info("    %s is already imported (%s)", image.manifest_digest, existing[:12])
        return ImportResult(existing, ref, None, 0, len(image.layers), True)
    created = image.config.get("created")
    timestamp = created if isinstance(created, str) else None
    candidates = _candidates(repo, known_commits)
    same = _same_image(repo, image.manifest_digest, known_metadata, candidates)
    if same:
        # Checking the layers out again costs a whole tree's worth of files (25 s for the
        # sample image under TCG) to rebuild a tree the repository already has.
        with steplog.step("commit-os-tree", f"Assembling the OS tree: the same as "
                                            f"{same[:12]}'s (the same image)"):
            renamed = repo.commit(same, branch=ref, subject=f"{imgref} {image.manifest_digest}",
                                  metadata=_metadata(image, imgref), bootable=True,
                                  timestamp=timestamp)
        return ImportResult(renamed, ref, None, 0, len(image.layers), False, tree_from=same)

    imported = reused = 0
    layer_commits: list[str] = []
    for index, layer in enumerate(image.layers, start=1):
        commit = repo.rev_parse(layer_ref(layer))
        if commit and repo.has_commit(commit):
            reused += 1
        else:
            size_mb = layer.size / 1e6
            with steplog.step(f"import-layer-{index}",
                              f"Importing layer {index}/{len(image.layers)} "
                              f"{layer.digest[:19]} ({size_mb:.1f} MB)"), \
                    steplog.progress_bytes("import", f"layer {index}", layer.size,
                                           layer.digest) as bar:
                commit = _import_layer(repo, image, layer, index, bar, layer_commits)
            imported += 1
        layer_commits.append(commit)

    subject = f"{imgref} {image.manifest_digest}"
    top = incremental.plan(
        repo, [layer.diff_id for layer in image.layers], candidates,
        lambda diff_id: _layer_commit(repo, diff_id),
        lambda c: (known_metadata or repo.metadata)(c, META_CONFIG))
    if top:
        with steplog.step("commit-os-tree", f"Assembling the OS tree: {len(top.added)} new "
                                            f"top layer(s) over {top.base[:12]}'s"), \
                _scratch(repo, "bootc-py-top-") as scratch:
            tree = scratch / "top"
            if top.added:
                incremental.checkout_top(repo, top, tree)
            # No --consume or --devino-canonical: either makes ostree walk the whole base
            # tree (11 s on a fast host for the sample image) instead of reading it lazily.
            commit = repo.commit(tree if top.added else top.base,
                                 over=top.base if top.added else None, branch=ref,
                                 subject=subject, metadata=_metadata(image, imgref),
                                 bootable=True, timestamp=timestamp)
        log.info("    imported %d layer(s), reused %d; commit %s over %s", imported, reused,
                 commit[:12], top.base[:12])
        return ImportResult(commit, ref, None, imported, reused, False, over=top.base)

    with steplog.step("commit-os-tree", "Assembling the OS tree in ostree layout"), \
            _scratch(repo, "bootc-py-merge-") as scratch:
        tree = scratch / "root"
        for commit in layer_commits:
            repo.checkout(commit, tree, union=True, whiteouts=True)
        kernel = to_ostree_layout(tree)
        commit = repo.commit(
            tree, branch=ref, subject=subject,
            metadata=_metadata(image, imgref), bootable=True, consume=True, link_speedup=True,
            timestamp=timestamp)
    log.info("    imported %d layer(s), reused %d; commit %s", imported, reused, commit[:12])
    return ImportResult(commit, ref, kernel, imported, reused, False)
