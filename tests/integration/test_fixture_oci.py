"""The image builder's deterministic layers, OCI layout and unit enabling (no mmdebstrap)."""

from __future__ import annotations

import gzip
import json
import os
import tarfile
from pathlib import Path

import pytest

from fixture_image.bootclayer import enable_links
from fixture_image.build import parse_oci_output
from fixture_image.errors import FixtureError
from fixture_image.oci import Layout, canonical_json, write_layer


def _tree(root: Path, order: list[str]) -> Path:
    """The same files, created in the given order (so different inode and readdir orders)."""
    for name in order:
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(name)
    os.link(root / "usr/bin/a", root / "hardlink")
    (root / "usr/link").symlink_to("../usr/bin/a")
    return root


def test_same_tree_gives_the_same_blob(tmp_path: Path) -> None:
    names = ["usr/bin/a", "etc/b", "usr/lib/c", "z"]
    a = write_layer(_tree(tmp_path / "a", names), tmp_path / "a.tar.gz", mtime=0, owner=(0, 0))
    b = write_layer(_tree(tmp_path / "b", list(reversed(names))), tmp_path / "b.tar.gz",
                    mtime=0, owner=(0, 0))
    assert a == b
    assert a.digest != a.diff_id
    with tarfile.open(tmp_path / "a.tar.gz") as tar:
        members = {m.name: m for m in tar.getmembers()}
    # One copy of the data; the name met second is a hard link to the first.
    assert [(m.name, m.linkname) for m in members.values() if m.islnk()] == \
        [("usr/bin/a", "hardlink")]
    assert members["usr/link"].issym() and members["usr/link"].linkname == "../usr/bin/a"
    assert all(m.uname == "" and m.uid == 0 and m.mtime == 0 for m in members.values())
    raw = (tmp_path / "a.tar.gz").read_bytes()
    assert raw[4:8] == b"\0\0\0\0"            # gzip header without a time
    assert gzip.decompress(raw)


def test_device_nodes_are_refused(tmp_path: Path) -> None:
    tree = tmp_path / "t"
    (tree / "dev").mkdir(parents=True)
    os.mknod(tree / "dev/null", 0o666 | 0o020000, os.makedev(1, 3))
    with pytest.raises(ValueError, match="device node"):
        write_layer(tree, tmp_path / "l.tar.gz")


def test_layout_tags_replace_and_share_blobs(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "oci")
    layout.init()
    d1 = layout.tag("v1", canonical_json({"a": 1}))
    layout.tag("v2", canonical_json({"a": 2}))
    d3 = layout.tag("v1", canonical_json({"a": 3}))
    index = json.loads((tmp_path / "oci/index.json").read_text())
    tags = {m["annotations"]["org.opencontainers.image.ref.name"]: m["digest"]
            for m in index["manifests"]}
    assert set(tags) == {"v1", "v2"} and tags["v1"] == d3 != d1
    assert layout.manifest("v1") == {"a": 3}
    assert json.loads((tmp_path / "oci/oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}


def test_enable_links(tmp_path: Path) -> None:
    unit = tmp_path / "x.timer"
    unit.write_text("[Timer]\nOnBootSec=1h\n[Install]\nWantedBy=timers.target multi-user.target"
                    "\nAlias=y.timer\n")
    assert enable_links(unit) == [
        ("etc/systemd/system/timers.target.wants/x.timer", "/usr/lib/systemd/system/x.timer"),
        ("etc/systemd/system/multi-user.target.wants/x.timer",
         "/usr/lib/systemd/system/x.timer"),
        ("etc/systemd/system/y.timer", "/usr/lib/systemd/system/x.timer")]
    static = tmp_path / "s.service"
    static.write_text("[Service]\nExecStart=/bin/true\n")
    assert enable_links(static) == []
    tmpl = tmp_path / "t@.service"
    tmpl.write_text("[Install]\nWantedBy=multi-user.target\nDefaultInstance=a\n")
    assert enable_links(tmpl) == [("etc/systemd/system/multi-user.target.wants/t@a.service",
                                   "/usr/lib/systemd/system/t@.service")]


@pytest.mark.parametrize("spec,expected", [
    ("oci:/x/y:v1", ("/x/y", "v1")), ("oci:rel:tag", (str(Path("rel").resolve()), "tag"))])
def test_parse_oci_output(spec: str, expected: tuple[str, str]) -> None:
    path, tag = parse_oci_output(spec)
    assert (str(path), tag) == expected


@pytest.mark.parametrize("spec", ["docker://x", "oci:", "oci:/x:", "/x/y:v1", "oci:/x/y"])
def test_parse_oci_output_refuses(spec: str) -> None:
    with pytest.raises(FixtureError, match="oci:DIR:TAG"):
        parse_oci_output(spec)
