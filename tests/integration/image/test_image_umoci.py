"""Flatten equality against `umoci raw unpack` on crafted multi-layer images: type, mode,
uid/gid, size, content hash, link target, device numbers, xattrs, mtimes, hard-link identity."""

from __future__ import annotations

from pathlib import Path

import pytest
from imagefix import Images, require_tool

from bootc_py.errors import UnsafePathError
from bootc_py.image.flatten import unpack
from bootc_py.image.ref import parse_imgref
from bootc_py.image.source import PullOptions, pull
from bootc_py.run import run
from fstree import diff, snapshot
from image_cases import REFUSED, TRAVERSAL
from registry_fixture import Registry

pytestmark = pytest.mark.registry  # a docker-registry on 127.0.0.1


def _umoci(images: Images, tag: str, dest: Path) -> Path:
    require_tool("umoci")
    run(["umoci", "raw", "unpack", "--image", f"{images.layout}:{tag}", str(dest)], quiet=True)
    return dest


def test_features_from_registry_equal_umoci(registry: Registry, images: Images,
                                            opts: PullOptions, tmp_path: Path) -> None:
    img = pull(parse_imgref(f"docker://{registry.host}/test/features:1"), opts)
    unpack(img, tmp_path / "ours")
    theirs = snapshot(_umoci(images, "features", tmp_path / "umoci"))
    ours = snapshot(tmp_path / "ours")
    assert not diff(theirs, ours), "\n".join(diff(theirs, ours))
    assert len(ours) > 40
    kinds = {d["type"] for d in ours.values()}
    assert len(kinds) == 6  # dir, file, symlink, char, block, fifo


def test_zstd_layers_unpack_to_the_same_tree(registry: Registry, opts: PullOptions,
                                             tmp_path: Path) -> None:
    for repo in ("features", "features-zstd"):
        unpack(pull(parse_imgref(f"docker://{registry.host}/test/{repo}:1"), opts),
               tmp_path / repo)
    a, b = snapshot(tmp_path / "features"), snapshot(tmp_path / "features-zstd")
    assert not diff(a, b), "\n".join(diff(a, b))


@pytest.mark.parametrize("case", sorted(set(TRAVERSAL) - REFUSED))
def test_contained_escapes_equal_umoci(images: Images, tmp_path: Path, case: str) -> None:
    """Symlinks that point out of the root are followed inside it, exactly as umoci does.

    These layers make directories implicitly (no tar entry), which get the current time in
    both tools, so directory mtimes are left out here."""
    img = pull(parse_imgref(images.oci(f"trav-{case}")),
               PullOptions(cache_dir=tmp_path / "cache"))
    unpack(img, tmp_path / "ours")
    theirs = snapshot(_umoci(images, f"trav-{case}", tmp_path / "umoci"), dir_mtimes=False)
    ours = snapshot(tmp_path / "ours", dir_mtimes=False)
    assert not diff(theirs, ours), "\n".join(diff(theirs, ours))


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused_layers_leave_nothing(images: Images, tmp_path: Path, case: str) -> None:
    img = pull(parse_imgref(images.oci(f"trav-{case}")),
               PullOptions(cache_dir=tmp_path / "cache"))
    before = snapshot(tmp_path)
    with pytest.raises(UnsafePathError):
        unpack(img, tmp_path / "work" / "rootfs")
    assert not (tmp_path / "work" / "rootfs").exists()
    after = {k: v for k, v in snapshot(tmp_path).items() if not k.startswith("work")}
    assert {k: v for k, v in before.items() if k != "."} == {
        k: v for k, v in after.items() if k != "."}
