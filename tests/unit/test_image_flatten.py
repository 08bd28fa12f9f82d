"""Flattening layers: semantics, RECORD mode, special files, safety, streaming memory."""

from __future__ import annotations

import gzip
import os
import stat
import tracemalloc
from pathlib import Path

import pytest

from bootc_py.errors import DigestMismatchError, ImageError, UnsafePathError
from bootc_py.image.flatten import LayerResult, WhiteoutMode, apply_layer, unpack
from bootc_py.image.ref import parse_imgref
from bootc_py.image.source import PullOptions, pull
from fstree import snapshot
from image_cases import BIG, CAP_NET_RAW, REFUSED, T0, TRAVERSAL, feature_layers
from oci_builder import LayerBuilder, OciLayout

NS = 1_000_000_000


def _apply(tmp: Path, layer: LayerBuilder, dest: Path, compression: str = "gzip",
           **kw: object) -> LayerResult:
    blob = layer.blob(compression)
    (tmp / "blobs").mkdir(exist_ok=True)
    path = tmp / "blobs" / blob.digest[7:19]
    path.write_bytes(blob.data)
    return apply_layer(path, blob.media_type, dest, **kw)  # type: ignore[arg-type]


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    dest = tmp_path / "rootfs"
    dest.mkdir()
    for layer, comp in zip(feature_layers(), ["gzip", "", "zstd"], strict=True):
        _apply(tmp_path, layer, dest, comp)
    return dest


def test_feature_image_semantics(rootfs: Path) -> None:
    r = rootfs
    # Whiteouts and opaque directories.
    assert not (r / "gone-file").exists() and not (r / "gone/a").exists()
    assert sorted(os.listdir(r / "gone")) == ["reborn"]
    assert sorted(os.listdir(r / "opq")) == ["new"]
    assert sorted(os.listdir(r / "opq2")) == ["kept-before-marker"]  # same layer: kept
    assert not (r / ".wh..wh.plnk").exists() and not list(r.rglob(".wh.*"))
    # Hard links: within a layer, across layers, whited-out member.
    assert (r / "etc/passwd-link").stat().st_ino == (r / "etc/passwd").stat().st_ino
    assert not (r / "usr/bin/tool-link").exists()
    assert os.lstat(r / "usr/bin/sym-hardlink").st_ino == os.lstat(r / "usr/bin/tool-sym").st_ino
    # Written through a symlinked parent, inside the root.
    assert (r / "usr/lib/through-symlink").read_bytes() == b"lands in usr/lib"
    assert os.readlink(r / "lib") == "usr/lib"
    # Ownership, special modes, capabilities.
    ping = os.lstat(r / "usr/bin/ping")
    assert stat.S_IMODE(ping.st_mode) == 0o4755
    assert os.getxattr(r / "usr/bin/ping", "security.capability") == CAP_NET_RAW
    assert stat.S_IMODE(os.lstat(r / "usr/bin/wall").st_mode) == 0o2755
    assert os.lstat(r / "usr/bin/wall").st_gid == 5
    assert stat.S_IMODE(os.lstat(r / "tmp").st_mode) == 0o1777
    srv = os.lstat(r / "srv")
    assert (stat.S_IMODE(srv.st_mode), srv.st_uid, srv.st_gid) == (0o2775, 33, 33)
    big = os.lstat(r / "usr/lib/biguid")
    assert (big.st_uid, big.st_gid) == (3_000_000, 3_000_001)
    assert (r / "usr/lib/big.bin").read_bytes() == BIG
    # Devices and fifos.
    null = os.lstat(r / "dev/null")
    assert stat.S_ISCHR(null.st_mode) and (os.major(null.st_rdev), os.minor(null.st_rdev)) == (1, 3)
    assert stat.S_ISBLK(os.lstat(r / "dev/loop7").st_mode)
    assert stat.S_ISFIFO(os.lstat(r / "dev/initctl").st_mode)
    # Type changes between layers.
    assert (r / "becomes-dir").is_dir() and (r / "becomes-file").read_bytes() == b"now a file"
    assert not (r / "sym-becomes-file").is_symlink()
    assert os.readlink(r / "file-becomes-sym") == "/etc/passwd"
    # A directory over a directory: new metadata, old xattrs gone.
    meta = os.lstat(r / "meta")
    assert (stat.S_IMODE(meta.st_mode), meta.st_uid, meta.st_gid) == (0o755, 7, 8)
    assert os.listxattr(r / "meta") == ["user.new"]
    assert os.getxattr(r / "xattrs", "user.bin") == b"\x00\xff\x10binary"
    # Names: long, non-ASCII, not UTF-8.
    assert (r / ("deep/" + "d" * 120 + "/" + "f" * 120)).read_bytes() == b"long"
    assert (r / "intl/café-naïve.txt").exists()
    assert os.path.exists(os.fsencode(r / "intl") + b"/latin1-\xe9")
    assert os.readlink(r / ("usr/lib/" + "l" * 150)) == "t" * 150


def test_mtimes(rootfs: Path) -> None:
    r = rootfs
    assert os.lstat(r / "etc/passwd").st_mtime_ns == (T0 + 1) * NS
    assert os.lstat(r / "usr/bin/ping").st_mtime_ns == 1_700_000_000 * NS
    # A directory keeps the mtime of the last layer listing it, not "when a child was added".
    assert os.lstat(r / "etc").st_mtime_ns == (T0 + 5) * NS
    assert os.lstat(r / "usr/bin").st_mtime_ns == (T0 + 2) * NS
    assert os.lstat(r / "opq").st_mtime_ns == (T0 + 100) * NS
    assert os.lstat(r / "lib").st_mtime_ns == 1_700_000_000 * NS  # symlinks too


def test_subsecond_mtime(tmp_path: Path) -> None:
    dest = tmp_path / "d"
    dest.mkdir()
    _apply(tmp_path, LayerBuilder().file("f", b"x", mtime=T0 + 0.25), dest)
    assert os.lstat(dest / "f").st_mtime_ns == T0 * NS + NS // 4


def test_record_mode_reports_whiteouts_and_touches_nothing(tmp_path: Path) -> None:
    dest = tmp_path / "d"
    dest.mkdir()
    (dest / "etc").mkdir()
    (dest / "etc/old").write_text("lower")
    layer = (LayerBuilder().dir("etc").whiteout("etc/old").whiteout("top").opaque("etc/x")
             .opaque("").file("etc/new", b"n").chardev("dev/null", 1, 3).fifo("fifo"))
    res = _apply(tmp_path, layer, dest, whiteouts=WhiteoutMode.RECORD, skip_special=True)
    assert res.whiteouts == ("etc/old", "top")
    assert res.opaque_dirs == ("etc/x", "")
    assert res.skipped == ("dev/null", "fifo")
    assert (dest / "etc/old").read_text() == "lower"
    assert (dest / "etc/new").read_bytes() == b"n"
    assert not (dest / "fifo").exists() and not (dest / "dev/null").exists()
    assert not list(dest.rglob(".wh.*"))


def test_implicit_parents_and_root_entry(tmp_path: Path) -> None:
    dest = tmp_path / "d"
    dest.mkdir()
    _apply(tmp_path, LayerBuilder().dir("./", mode=0o750, mtime=T0).file("a/b/c", b"c"), dest)
    assert stat.S_IMODE(os.lstat(dest / "a/b").st_mode) == 0o755
    assert stat.S_IMODE(os.lstat(dest).st_mode) == 0o750
    assert os.lstat(dest).st_mtime_ns == T0 * NS


def test_hard_link_to_missing_target(tmp_path: Path) -> None:
    dest = tmp_path / "d"
    dest.mkdir()
    with pytest.raises(ImageError, match="points at 'nowhere', which does not exist"):
        _apply(tmp_path, LayerBuilder().hardlink("x", "nowhere"), dest)


def _outside(tmp: Path) -> dict[str, object]:
    """Everything around the target (minus the test's own blob files)."""
    return {k: v for k, v in snapshot(tmp).items()
            if not k.startswith(("sandbox/rootfs", "blobs")) and k != "."}


@pytest.mark.parametrize("case", sorted(TRAVERSAL))
def test_traversal_never_leaves_the_root(tmp_path: Path, case: str) -> None:
    # Sentinels around the target: what a malicious layer would aim at.
    sandbox = tmp_path / "sandbox"
    dest = sandbox / "rootfs"
    dest.mkdir(parents=True)
    for d in (tmp_path / "victim", tmp_path / "etc", tmp_path / "outside", sandbox / "etc"):
        d.mkdir(exist_ok=True)
        (d / "keep").write_text("sentinel")
    (tmp_path / "etc/hostname").write_text("host")
    (tmp_path / "etc/inside").write_text("host")
    (tmp_path / "blobs").mkdir()
    before = _outside(tmp_path)
    layers = TRAVERSAL[case]
    if case in REFUSED:
        with pytest.raises(UnsafePathError):
            for layer in layers:
                _apply(tmp_path, layer, dest)
    else:
        for layer in layers:
            _apply(tmp_path, layer, dest)
    assert _outside(tmp_path) == before
    contained = {"absolute-name": "abs-file", "symlink-absolute": "etc/pwned",
                 "symlink-relative": "outside-target/pwned",
                 "symlink-earlier-layer": "outside/pwned"}
    if case in contained:
        assert (dest / contained[case]).read_bytes() == b"x"
    if case == "whiteout-through-symlink":
        assert not (dest / "victim/keep").exists()
        assert (tmp_path / "victim/keep").read_text() == "sentinel"
    if case == "hardlink-through-symlink":
        assert (dest / "linked").stat().st_ino == (dest / "etc/inside").stat().st_ino
        assert (tmp_path / "etc/inside").stat().st_nlink == 1


def test_memory_does_not_grow_with_layer_size(tmp_path: Path) -> None:
    size = 256 << 20
    blob = tmp_path / "zeros.tar.gz"
    layer = LayerBuilder()
    layer.file("small", b"s")
    raw = layer.tar()
    # A 256 MiB file of zeros compresses to ~250 KiB: a decompression bomb for a naive reader.
    import io
    import tarfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        ti = tarfile.TarInfo("huge")
        ti.size = size
        tf.addfile(ti, io.BytesIO(bytes(size)))
    blob.write_bytes(gzip.compress(buf.getvalue(), compresslevel=1))
    del buf, raw
    dest = tmp_path / "d"
    dest.mkdir()
    tracemalloc.start()
    try:
        apply_layer(blob, "application/vnd.oci.image.layer.v1.tar+gzip", dest)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (dest / "huge").stat().st_size == size
    assert peak < 16 << 20, f"peak Python memory {peak >> 20} MiB"


def test_diff_id_is_verified(tmp_path: Path) -> None:
    dest = tmp_path / "d"
    dest.mkdir()
    layer = LayerBuilder().file("f", b"x")
    blob = layer.blob("gzip")
    p = tmp_path / "blob"
    p.write_bytes(blob.data)
    apply_layer(p, blob.media_type, dest, diff_id=blob.diff_id)
    with pytest.raises(DigestMismatchError, match="diff_id"):
        apply_layer(p, blob.media_type, dest, diff_id="sha256:" + "0" * 64)


def test_unpack_whole_image_and_nothing_half_written(tmp_path: Path) -> None:
    layout = OciLayout(tmp_path / "oci")
    ok = [x.blob("gzip") for x in feature_layers()]
    layout.add_image("good", ok)
    layout.add_image("bad", [ok[0], LayerBuilder().file("fine", b"1")
                             .file("../escape", b"x").blob("gzip")])
    opts = PullOptions(cache_dir=tmp_path / "cache")
    good = pull(parse_imgref(f"oci:{layout.path}:good"), opts)
    unpack(good, tmp_path / "out")
    assert os.lstat(tmp_path / "out").st_mtime_ns == 0  # reproducible root mtime
    assert (tmp_path / "out/etc/hostname").read_text() == "image\n"
    with pytest.raises(ImageError, match="not empty"):
        unpack(good, tmp_path / "out")
    bad = pull(parse_imgref(f"oci:{layout.path}:bad"), opts)
    with pytest.raises(UnsafePathError, match=r"'\.\./escape'.*traversal"):
        unpack(bad, tmp_path / "new")
    assert not (tmp_path / "new").exists() and not (tmp_path / "escape").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(UnsafePathError):
        unpack(bad, tmp_path / "empty")
    assert (tmp_path / "empty").is_dir() and not any((tmp_path / "empty").iterdir())
