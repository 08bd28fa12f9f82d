"""Importing images into a real ostree repository: layers are never imported twice."""

from __future__ import annotations

import json
from pathlib import Path

from synthetic import SyntheticImages

from bootc_py.image.ref import parse_imgref
from bootc_py.image.source import PullOptions, pull
from bootc_py.store.importer import (
    LAYER_REF_PREFIX,
    META_CONFIG,
    META_IMGREF,
    META_MANIFEST_DIGEST,
    import_image,
)
from bootc_py.store.repo import OstreeRepo


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
