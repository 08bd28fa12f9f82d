"""Importing images into a real ostree repository: layers are never imported twice."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

from synthetic import SyntheticImages, base_tree

from bootc_py.image.ref import parse_imgref
from bootc_py.image.source import PullOptions, pull
from bootc_py.run import output
from bootc_py.store.importer import import_image
from bootc_py.store.names import (
    LAYER_REF_PREFIX,
    META_CONFIG,
    META_IMGREF,
    META_MANIFEST_DIGEST,
)
from bootc_py.store.repo import OstreeRepo
from fixture_image.oci import Layout, canonical_json, write_layer


def test_v2_after_v1_imports_only_the_changed_layer(synthetic: SyntheticImages,
                                                    tmp_path: Path) -> None:
    repo = OstreeRepo(tmp_path / "repo")
    repo.init("bare")
    opts = PullOptions(cache_dir=synthetic.cache)
    v1 = pull(parse_imgref(synthetic.ref("v1")), opts)
    v2 = pull(parse_imgref(synthetic.ref("v2")), opts)
    assert v1.layers[0].digest == v2.layers[0].digest

    first = import_image(repo, v1, "docker://127.0.0.1:5000/syn:1")
    assert (first.layers_imported, first.layers_reused) == (2, 0)
    second = import_image(repo, v2, "docker://127.0.0.1:5000/syn:1")
    assert (second.layers_imported, second.layers_reused) == (1, 1)
    again = import_image(repo, v2, "docker://127.0.0.1:5000/syn:1")
    assert again.reused_commit and again.commit == second.commit

    assert len(repo.refs(LAYER_REF_PREFIX)) == 3
    assert repo.metadata(second.commit, META_MANIFEST_DIGEST) == v2.manifest_digest
    assert repo.metadata(second.commit, META_IMGREF) == "docker://127.0.0.1:5000/syn:1"
    config = json.loads(repo.metadata(second.commit, META_CONFIG) or "{}")
    assert config["rootfs"]["diff_ids"] == [layer.diff_id for layer in v2.layers]
    # The OS tree is in ostree layout, with v2's top layer (and its whiteout) applied.
    tree = tmp_path / "checkout"
    repo.checkout(second.commit, tree, hardlinks=False)
    assert (tree / "usr/share/syn/variant").read_text() == "v2\n"
    assert (tree / "usr/etc/os-release").exists() and not (tree / "usr/etc/hostname").exists()
    assert not (tree / "etc").exists()


def test_hard_link_into_a_lower_layer(tmp_path: Path) -> None:
    """`RUN ln /usr/bin/ostree /usr/bin/ostree2` style: the link's target is in an earlier
    layer, and the store imports each layer on its own."""
    work = tmp_path / "build"
    base = work / "base"
    base.mkdir(parents=True)
    base_tree(base)
    layout = Layout(tmp_path / "oci")
    layout.init()
    blob = write_layer(base, work / "base.tar.gz", mtime=1700000000)
    layout.put_file(blob.digest, work / "base.tar.gz")
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        link = tarfile.TarInfo("usr/bin/ostree2")
        link.type, link.linkname = tarfile.LNKTYPE, "usr/bin/ostree"
        tar.addfile(link)
    upper = gzip.compress(raw.getvalue(), mtime=0)
    upper_digest = layout.put_bytes(upper)
    config = canonical_json({
        "architecture": "amd64", "os": "linux",
        "config": {"Labels": {"containers.bootc": "1"}},
        "rootfs": {"type": "layers", "diff_ids": [
            blob.diff_id, "sha256:" + hashlib.sha256(raw.getvalue()).hexdigest()]}})
    manifest = {
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": layout.put_bytes(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": d, "size": n}
                   for d, n in ((blob.digest, blob.size), (upper_digest, len(upper)))]}
    layout.tag("linked", json.dumps(manifest).encode())

    repo = OstreeRepo(tmp_path / "repo")
    repo.init("bare")
    image = pull(parse_imgref(f"oci:{layout.root}:linked"),
                 PullOptions(cache_dir=tmp_path / "cache"))
    result = import_image(repo, image, "oci:linked")
    tree = tmp_path / "checkout"
    repo.checkout(result.commit, tree, copy=True)
    assert (tree / "usr/bin/ostree2").read_text() == (tree / "usr/bin/ostree").read_text()
    assert (tree / "usr/bin/ostree2").stat().st_mode == (tree / "usr/bin/ostree").stat().st_mode


def test_the_same_image_under_another_name_reuses_its_tree(synthetic: SyntheticImages,
                                                          tmp_path: Path) -> None:
    """`switch` to another tag holding an image the host has: no layer checkout, one new
    commit over the known root tree, carrying the new name."""
    repo = OstreeRepo(tmp_path / "repo")
    repo.init("bare")
    v2 = pull(parse_imgref(synthetic.ref("v2")), PullOptions(cache_dir=synthetic.cache))
    first = import_image(repo, v2, "docker://127.0.0.1:5000/syn:stable")
    assert first.tree_from is None

    other = import_image(repo, v2, "docker://127.0.0.1:5000/syn:other")
    assert other.tree_from == first.commit and not other.reused_commit
    assert other.commit != first.commit and other.ref != first.ref
    assert repo.rev_parse(other.ref) == other.commit
    assert repo.metadata(other.commit, META_IMGREF) == "docker://127.0.0.1:5000/syn:other"
    assert repo.metadata(other.commit, META_MANIFEST_DIGEST) == v2.manifest_digest
    assert repo.metadata(other.commit, "ostree.bootable") == "true"
    assert _root_tree(repo, other.commit) == _root_tree(repo, first.commit)

    # A deployment whose ref moved on is found through known_commits.
    repo_b = OstreeRepo(tmp_path / "repo-b")
    repo_b.init("bare")
    kept = import_image(repo_b, v2, "docker://127.0.0.1:5000/syn:stable")
    (repo_b.path / "refs/heads" / kept.ref).unlink()
    again = import_image(repo_b, v2, "oci:/mnt/usb/os", known_commits=[kept.commit])
    assert again.tree_from == kept.commit


def _root_tree(repo: OstreeRepo, commit: str) -> str:
    # `ls -C -d COMMIT /` prints the root directory with its contents checksum.
    line = output(["ostree", f"--repo={repo.path}", "ls", "-C", "-d", commit, "/"])
    return line.split()[4]
