"""The preflight scan: an image's final tree from its layers, whiteouts applied."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from bootc_py.artifacts import build_config, live
from bootc_py.errors import BootcPyError, LintError
from bootc_py.image.cache import BlobCache
from bootc_py.image.ref import parse_imgref
from bootc_py.image.source import Image, PullOptions, pull
from bootc_py.installer import preflight
from bootc_py.installer.preflight import summarize
from bootc_py.lint import initramfs_contains


def _forget(monkeypatch: pytest.MonkeyPatch) -> None:
    """A new process: nothing summarized in memory."""
    monkeypatch.setattr(preflight, "_SUMMARIES", {})


@pytest.fixture(autouse=True)
def _fresh_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test as its own process: the same layers in another test's cache are not known."""
    _forget(monkeypatch)


def _layer(members: list[tuple[str, str, bytes | str]]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif kind == "link":
                info.type, info.linkname = tarfile.LNKTYPE, str(data)
                tar.addfile(info)
            elif kind == "sym":
                info.type, info.linkname = tarfile.SYMTYPE, str(data)
                tar.addfile(info)
            else:
                payload = data if isinstance(data, bytes) else data.encode()
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    return gzip.compress(raw.getvalue(), mtime=0)


def _oci(root: Path, layers: list[bytes]) -> str:
    blobs = root / "blobs/sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return f"sha256:{digest}"

    diff_ids = [f"sha256:{hashlib.sha256(gzip.decompress(b)).hexdigest()}" for b in layers]
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": put(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": put(b), "size": len(b)} for b in layers]}).encode()
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": put(manifest),
        "size": len(manifest), "annotations": {"org.opencontainers.image.ref.name": "t"}}]}))
    return f"oci:{root}:t"


def test_whiteouts_opaque_dirs_hardlinks_and_captures(tmp_path: Path) -> None:
    initramfs = gzip.compress(b"070701 ... usr/lib/ostree/ostree-prepare-root ...")
    lower = _layer([
        ("etc", "dir", b""), ("etc/os-release", "file", "ID=x\n"),
        ("usr/lib/modules/6.1/vmlinuz", "file", b"k" * 1000),
        ("usr/lib/modules/6.1/initramfs.img", "file", initramfs),
        ("usr/lib/modules/5.0/vmlinuz", "file", b"old"),
        ("opt/app", "dir", b""), ("opt/app/a", "file", "a"), ("opt/app/b", "file", "b"),
        ("usr/lib/bootc/install/00.toml", "file", '[install]\nkargs = ["a"]\n'),
        ("usr/lib/bootc-image-builder/config.toml", "file",
         '[customizations.kernel]\nappend = "quiet x=1"\n'),
    ])
    upper = _layer([
        ("usr/lib/modules/.wh.5.0", "file", b""),
        ("opt/app/.wh..wh..opq", "file", b""), ("opt/app/c", "file", "c"),
        ("usr/lib/bootc/install/10.toml", "link", "usr/lib/bootc/install/00.toml"),
        ("usr/bin/sh", "sym", "dash"),
    ])
    ref = _oci(tmp_path / "oci", [lower, upper])
    image = pull(parse_imgref(ref), PullOptions(cache_dir=tmp_path / "cache"))
    summary = summarize(image)
    assert summary.glob("usr/lib/modules/*/vmlinuz") == ["usr/lib/modules/6.1/vmlinuz"]
    assert summary.glob("opt/app/*") == ["opt/app/c"]
    assert summary.initramfs_ok == {"usr/lib/modules/6.1/initramfs.img": True}
    assert summary.files["usr/lib/bootc/install/10.toml"] == b'[install]\nkargs = ["a"]\n'
    assert summary.symlinks["usr/bin/sh"] == "dash"
    assert summary.exists("etc/os-release") and not summary.exists("usr/lib/modules/5.0")
    assert summary.unpacked_bytes >= 1000
    # `build` finds the image's own config.toml in the same (only) pass over the layers.
    embedded = build_config.embedded(summary.files)
    assert embedded is not None and embedded.kargs == ("quiet", "x=1")
    assert summarize(image) is summary


def test_initramfs_with_early_cpio() -> None:
    early = b"070701" + b"0" * 100 + b"kernel/x86/microcode/GenuineIntel.bin" + b"TRAILER!!!"
    main = gzip.compress(b"... usr/lib/ostree/ostree-prepare-root ...")
    assert initramfs_contains(io.BytesIO(early + b"\0" * 7 + main))
    assert not initramfs_contains(io.BytesIO(early + gzip.compress(b"nothing here")))


def _small_image(tmp_path: Path) -> str:
    return _oci(tmp_path / "oci", [_layer([
        ("usr/lib/os-release", "file", "ID=x\n"), ("usr/lib/modules/6.1/vmlinuz", "file", b"k"),
        ("usr/bin/sh", "sym", "dash")])])


def _kept(image: Image) -> Path:
    return BlobCache(image.cache_dir).summary_path(
        preflight.summary_key(tuple(x.digest for x in image.layers)))


def test_the_summary_is_kept_in_the_cache_and_the_next_process_does_not_scan(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ref = _small_image(tmp_path)
    image = pull(parse_imgref(ref), PullOptions(cache_dir=tmp_path / "cache"))
    first = summarize(image)
    _forget(monkeypatch)
    blob = image.blob_path(image.layers[0].digest)
    good = blob.read_bytes()
    blob.chmod(0o644)
    blob.write_bytes(b"not a tar")  # a scan would fail now: the kept summary is what answers
    assert summarize(image) == first
    assert summarize(image).files["usr/lib/os-release"] == b"ID=x\n"
    # An unreadable kept summary is scanned again (and kept again).
    _forget(monkeypatch)
    blob.write_bytes(good)
    kept = _kept(image)
    kept.write_text("{not json")
    assert summarize(image) == first
    assert json.loads(kept.read_text())["layers"] == [image.layers[0].digest]
    # So is one made by another scan (its patterns or format changed): another key.
    _forget(monkeypatch)
    monkeypatch.setattr(preflight, "_scan_id", lambda: "another bootc-py's scan")
    blob.write_bytes(b"not a tar")
    with pytest.raises(BootcPyError):
        summarize(image)


def test_a_summary_put_into_another_cache_spares_its_installer_the_scan(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What `build --type iso` does for the live root's cache (artifacts/live.py)."""
    ref = _small_image(tmp_path)
    image = pull(parse_imgref(ref), PullOptions(cache_dir=tmp_path / "build-cache"))
    live_cache = tmp_path / "live-root/var/lib/bootc-py/cache"
    preflight.keep_summary(image, live_cache)
    _forget(monkeypatch)
    live = pull(parse_imgref(ref), PullOptions(cache_dir=live_cache))
    blob = live.blob_path(live.layers[0].digest)
    blob.chmod(0o644)
    blob.write_bytes(b"not a tar")
    assert summarize(live).symlinks == {"usr/bin/sh": "dash"}
    # `image prune` drops kept summaries with the blobs (they are made again on demand).
    BlobCache(live_cache).prune(everything=True)
    assert not any((live_cache / "summaries").iterdir())


@pytest.mark.parametrize("damage", [
    lambda d: {**d, "layers": ["sha256:" + "0" * 64]},          # another image's
    lambda d: {**d, "unpacked_bytes": True},                    # a bool is not a size
    lambda d: {**d, "unpacked_bytes": -1},
    lambda d: {**d, "initramfs_ok": {"usr/lib/modules/6.1/initramfs.img": "false"}},
    lambda d: {**d, "entries": {"usr": "device"}},
    lambda d: {k: v for k, v in d.items() if k != "files"},     # partial
    lambda d: {**d, "files": {"usr/lib/os-release": "not base64!"}},
    lambda d: "[" * 100000 + "]" * 100000,                      # nested past the recursion limit
    lambda d: json.dumps(d).replace('"unpacked_bytes":', '"unpacked_bytes":Infinity,"x":'),
])
def test_a_kept_summary_that_is_not_whole_and_this_images_is_scanned_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: Any) -> None:
    image = pull(parse_imgref(_small_image(tmp_path)),
                 PullOptions(cache_dir=tmp_path / "cache"))
    first = summarize(image)
    kept = _kept(image)
    bad = damage(json.loads(kept.read_text()))
    kept.write_text(bad if isinstance(bad, str) else json.dumps(bad))
    _forget(monkeypatch)
    assert summarize(image) == first
    assert json.loads(kept.read_text())["layers"] == [image.layers[0].digest]


def test_an_unwritable_cache_only_loses_the_shortcut(tmp_path: Path) -> None:
    image = pull(parse_imgref(_small_image(tmp_path)),
                 PullOptions(cache_dir=tmp_path / "cache"))
    (tmp_path / "cache/summaries").write_text("a file where the directory would go")
    assert summarize(image).symlinks == {"usr/bin/sh": "dash"}


def test_prune_keeps_the_summaries_of_the_images_it_keeps(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    image = pull(parse_imgref(_small_image(tmp_path)), PullOptions(cache_dir=cache))
    summarize(image)
    stale = BlobCache(cache).summary_path("0" * 64)
    stale.write_text(json.dumps({"layers": ["sha256:" + "1" * 64]}))
    BlobCache(cache).prune()
    assert _kept(image).is_file() and not stale.exists()
    BlobCache(cache).prune(everything=True)
    assert not _kept(image).exists()


def test_the_live_root_summary_never_follows_the_images_symlinks_out_of_it(
        tmp_path: Path) -> None:
    image = pull(parse_imgref(_small_image(tmp_path)),
                 PullOptions(cache_dir=tmp_path / "cache"))
    outside = tmp_path / "host-var-lib"
    outside.mkdir()
    rootfs = tmp_path / "rootfs"
    (rootfs / "var").mkdir(parents=True)
    (rootfs / "var/lib").symlink_to(outside)  # an image's absolute symlink, seen from the host
    live._keep_summary(image, rootfs)
    assert list(outside.iterdir()) == []
    (rootfs / "var/lib").unlink()
    live._keep_summary(image, rootfs)
    assert list((rootfs / "var/lib/bootc-py/cache/summaries").glob("*.json"))


def test_the_live_unit_and_the_pxe_medium_stay_inside_the_live_root(tmp_path: Path) -> None:
    outside = tmp_path / "host"
    outside.mkdir()
    rootfs = tmp_path / "rootfs"
    units = rootfs / "usr/lib/systemd/system"
    units.mkdir(parents=True)
    (units / live.LIVE_UNIT).symlink_to(outside / "written-through")  # dangling
    (rootfs / "etc").mkdir()
    (rootfs / "etc/systemd").symlink_to(outside)
    with pytest.raises(LintError, match="/etc/systemd as a symlink"):
        live._add_live_unit(rootfs)
    assert list(outside.iterdir()) == []
    (rootfs / "usr/lib/bootc-py").mkdir(parents=True)
    (rootfs / "usr/lib/bootc-py/medium").symlink_to(outside)
    medium = live.fresh_dir(rootfs, live.IN_LIVE_ROOT)
    assert medium.is_dir() and not medium.is_symlink() and list(outside.iterdir()) == []
    (rootfs / "usr/lib/bootc-py").rename(rootfs / "usr/lib/old")
    (rootfs / "usr/lib/bootc-py").symlink_to(outside)
    with pytest.raises(LintError):
        live.fresh_dir(rootfs, live.IN_LIVE_ROOT)
