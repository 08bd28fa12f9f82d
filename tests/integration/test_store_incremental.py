"""An update's OS tree laid over the booted one (store/incremental.py), in a real ostree repo:
used only where it builds exactly the tree a full assembly builds, which every case checks
against a fresh import of the same image."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from synthetic import base_tree, build_image

from bootc_py.image.ref import parse_imgref
from bootc_py.image.source import Image, PullOptions, pull
from bootc_py.run import output
from bootc_py.store.importer import ImportResult, import_image
from bootc_py.store.names import META_IMGREF, META_VERSION
from bootc_py.store.repo import OstreeRepo

Tree = Callable[[Path], None]


def _top(variant: str, *, extra: bool = False, newdir: bool = False, var: bool = False,
         bin_mode: int | None = None) -> Tree:
    def fill(root: Path) -> None:
        (root / "usr/share/syn").mkdir(parents=True)
        (root / "usr/share/syn/variant").write_text(variant + "\n")
        (root / "etc/syn").mkdir(parents=True)
        (root / "etc/syn/syn.conf").write_text(f"variant={variant}\n")
        (root / "usr/bin").mkdir(parents=True)
        (root / "usr/bin/syn-tool").symlink_to(f"../share/syn/{variant}")
        if extra:
            (root / "usr/share/syn/extra").write_text("extra\n")
        if newdir:  # a new directory tree: the base lacks all of it
            for sub in ("one", "two"):
                (root / "usr/share/syn-new" / sub).mkdir(parents=True)
                (root / "usr/share/syn-new" / sub / "file").write_text(sub + "\n")
        if var:
            (root / "var/lib/syn").mkdir(parents=True)
            (root / "var/lib/syn/state").write_text("state\n")
        if bin_mode is not None:
            (root / "usr/bin").chmod(bin_mode)  # the base layer's usr/bin is 0755
    return fill


def _mid(root: Path) -> None:
    (root / "usr/lib/syn-mid").mkdir(parents=True)
    (root / "usr/lib/syn-mid/lib").write_text("middle layer\n")


IMAGES: dict[str, list[Tree]] = {
    "a": [base_tree, _top("a")],
    "b": [base_tree, _top("b")],
    "b-extra": [base_tree, _top("b", extra=True)],
    "b-newdir": [base_tree, _top("b", newdir=True)],
    "b-var": [base_tree, _top("b", var=True)],
    "b-mode": [base_tree, _top("b", bin_mode=0o700)],
    "mid-a": [base_tree, _mid, _top("a")],
    "mid-b": [base_tree, _mid, _top("b")],
    "b-relabelled": [base_tree, _top("b")],  # b's layers, another config (its version label)
}


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Image]:
    work = tmp_path_factory.mktemp("incremental")
    opts = PullOptions(cache_dir=work / "cache")
    out = {}
    for tag, trees in IMAGES.items():
        ref = build_image(work / "oci", tag, trees, work=work / "build",
                          labels={"org.opencontainers.image.version": tag})
        out[tag] = pull(parse_imgref(ref), opts)
    return out


def _root_tree(repo: OstreeRepo, commit: str) -> str:
    # `ls -C -d COMMIT /` prints the root directory with its contents checksum.
    return output(["ostree", f"--repo={repo.path}", "ls", "-C", "-d", commit, "/"]).split()[4]


def _update(tmp_path: Path, images: dict[str, Image], old: str, new: str
            ) -> tuple[OstreeRepo, ImportResult, ImportResult]:
    """`old` imported, then `new` under the same name as an upgrade does; and the tree a
    fresh repository assembles for `new`, which the update's must equal."""
    repo = OstreeRepo(tmp_path / "repo")
    repo.init("bare")
    first = import_image(repo, images[old], "oci:syn")
    second = import_image(repo, images[new], "oci:syn", known_commits=[first.commit])
    fresh_repo = OstreeRepo(tmp_path / "fresh")
    fresh_repo.init("bare")
    fresh = import_image(fresh_repo, images[new], "oci:syn")
    assert fresh.over is None
    assert _root_tree(repo, second.commit) == _root_tree(fresh_repo, fresh.commit)
    assert repo.metadata(second.commit, META_VERSION) == new
    assert repo.metadata(second.commit, META_IMGREF) == "oci:syn"
    assert repo.metadata(second.commit, "ostree.linux")  # still a bootable commit
    return repo, first, second


@pytest.mark.parametrize(("old", "new", "imported"), [
    ("a", "b", 1), ("b", "b-extra", 1), ("a", "b-newdir", 1), ("mid-a", "mid-b", 1),
    ("b", "b-relabelled", 0)])
def test_new_top_layers_are_laid_over_the_old_tree(tmp_path: Path, images: dict[str, Image],
                                                   old: str, new: str, imported: int) -> None:
    repo, first, second = _update(tmp_path, images, old, new)
    assert second.over == first.commit
    assert (second.layers_imported, second.layers_reused) == (
        imported, len(images[new].layers) - imported)
    tree = tmp_path / "checkout"
    repo.checkout(second.commit, tree, hardlinks=False)
    assert (tree / "usr/share/syn/variant").read_text() == "b\n"
    assert (tree / "usr/etc/syn/syn.conf").read_text() == "variant=b\n"
    assert not (tree / "etc").exists()


@pytest.mark.parametrize(("old", "new", "why"), [
    ("b-extra", "b", "a file of the old top layer would stay"),
    ("a", "b-var", "/var content moves in the ostree layout"),
    ("a", "b-mode", "a directory's metadata comes from the lower layer"),
    ("mid-a", "b", "the image drops a layer"),
])
def test_anything_else_assembles_the_whole_tree(tmp_path: Path, images: dict[str, Image],
                                                old: str, new: str, why: str) -> None:
    _, _, second = _update(tmp_path, images, old, new)
    assert second.over is None, why
