"""Pulling from OCI layouts and archives (in-process), the cache, and manifest validation."""

from __future__ import annotations

import json
import os
import tarfile
import threading
from pathlib import Path

import pytest

from bootc_py.errors import DigestMismatchError, ImageError, NotFoundError, UnsupportedError
from bootc_py.image.cache import BlobCache, default_cache_dir
from bootc_py.image.ref import parse_imgref
from bootc_py.image.source import PullOptions, cached_image, pull, resolve, skopeo_error
from oci_builder import LayerBuilder, OciLayout, sha256

L1 = LayerBuilder().dir("etc").file("etc/os-release", b"ID=test\n")
L2 = LayerBuilder().file("etc/motd", b"hello\n" * 1000)


@pytest.fixture
def layout(tmp_path: Path) -> OciLayout:
    lay = OciLayout(tmp_path / "oci")
    lay.add_image("v1", [L1.blob("gzip"), L2.blob("zstd")],
                  labels={"containers.bootc": "1", "version": "42"})
    return lay


@pytest.fixture
def opts(tmp_path: Path) -> PullOptions:
    return PullOptions(cache_dir=tmp_path / "cache")


def test_pull_from_layout_then_nothing_to_fetch(layout: OciLayout, opts: PullOptions) -> None:
    ref = parse_imgref(f"oci:{layout.path}:v1")
    img = pull(ref, opts)
    assert img.labels == {"containers.bootc": "1", "version": "42"}
    assert img.architecture == "amd64" and img.os == "linux"
    assert [x.media_type.rsplit("+", 1)[-1] for x in img.layers] == ["gzip", "zstd"]
    assert img.fetched == sum(x.size for x in img.layers)
    for x in img.layers:
        assert sha256(img.blob_path(x.digest).read_bytes()) == x.digest
    assert pull(ref, opts).fetched == 0
    assert cached_image(ref, opts.cache_dir) == img
    assert [r.ref for r in BlobCache(opts.cache_dir).images()] == [str(ref)]


def test_corrupt_cached_blob_is_fetched_again(layout: OciLayout, opts: PullOptions,
                                              caplog: pytest.LogCaptureFixture) -> None:
    ref = parse_imgref(f"oci:{layout.path}:v1")
    img = pull(ref, opts)
    victim = img.blob_path(img.layers[1].digest)
    victim.write_bytes(b"bit rot")
    again = pull(ref, opts)
    assert again.fetched == img.layers[1].size
    assert "is corrupt" in caplog.text
    assert sha256(victim.read_bytes()) == img.layers[1].digest


def test_resolve_fetches_no_layers(layout: OciLayout, opts: PullOptions) -> None:
    img = resolve(parse_imgref(f"oci:{layout.path}:v1"), opts)
    with pytest.raises(ImageError, match="not in the cache"):
        img.blob_path(img.layers[0].digest)
    assert not BlobCache(opts.cache_dir).images()


def test_index_platform_selection(tmp_path: Path, opts: PullOptions) -> None:
    lay = OciLayout(tmp_path / "multi")
    lay.add_index("m", {"amd64": [L1.blob("gzip")], "arm64": [L2.blob("gzip")]})
    ref = parse_imgref(f"oci:{lay.path}:m")
    amd = pull(ref, opts)
    arm = pull(ref, PullOptions(cache_dir=opts.cache_dir, arch="aarch64"))
    assert (amd.architecture, arm.architecture) == ("amd64", "arm64")
    assert amd.index_digest == arm.index_digest is not None
    with pytest.raises(UnsupportedError, match=r"no image for linux/s390x \(it has: "
                                               r"linux/amd64, linux/arm64\)"):
        pull(ref, PullOptions(cache_dir=opts.cache_dir, arch="s390x"))


def test_oci_archive(layout: OciLayout, tmp_path: Path, opts: PullOptions) -> None:
    archive = tmp_path / "img.tar"
    with tarfile.open(archive, "w") as tf:
        tf.add(layout.path, arcname=".")
    img = pull(parse_imgref(f"oci-archive:{archive}:v1"), opts)
    assert img.labels["version"] == "42" and img.fetched > 0


def _raw_manifest(layout: OciLayout, tag: str, doc: dict[str, object]) -> None:
    layout.tag(tag, json.dumps(doc).encode(), "application/vnd.oci.image.manifest.v1+json")


def test_malformed_and_unsupported(layout: OciLayout, opts: PullOptions) -> None:
    good = json.loads(layout.blob_path(layout.index["manifests"][0]["digest"]).read_bytes())
    cases = {
        "nolayers": ({**good, "layers": None}, ImageError, "'layers' is not a list"),
        "baddigest": ({**good, "config": {**good["config"], "digest": "sha256:zz"}},
                      ImageError, "config: invalid digest"),
        "badsize": ({**good, "layers": [{**good["layers"][0], "size": "big"}]}, ImageError,
                    r"layers\[0\]: invalid size"),
        "schema3": ({**good, "schemaVersion": 3}, ImageError, "schemaVersion is 3"),
        "bzip2": ({**good, "layers": [{**good["layers"][0], "mediaType":
                                       "application/vnd.oci.image.layer.v1.tar+bzip2"}]},
                  UnsupportedError, "unsupported media type"),
        "artifact": ({**good, "config": {**good["config"], "mediaType":
                                         "application/vnd.cncf.helm.config.v1+json"}},
                     UnsupportedError, "not a container image"),
        "schema1": ({"schemaVersion": 1, "name": "x", "fsLayers": []}, UnsupportedError,
                    "schema 1"),
    }
    for tag, (doc, exc, msg) in cases.items():
        _raw_manifest(layout, tag, doc)
        with pytest.raises(exc, match=msg):
            pull(parse_imgref(f"oci:{layout.path}:{tag}"), opts)
    (layout.path / "index.json").write_text("{nope")
    with pytest.raises(ImageError, match="not valid JSON"):
        pull(parse_imgref(f"oci:{layout.path}:v1"), opts)
    assert not BlobCache(opts.cache_dir).images()


def test_missing_tag_blob_and_layout(layout: OciLayout, tmp_path: Path,
                                     opts: PullOptions) -> None:
    with pytest.raises(NotFoundError, match=r"no image tagged 'v9' .*\(tags: v1\)"):
        pull(parse_imgref(f"oci:{layout.path}:v9"), opts)
    with pytest.raises(NotFoundError, match="does not exist"):
        pull(parse_imgref(f"oci:{tmp_path}/nowhere"), opts)
    with pytest.raises(ImageError, match="no oci-layout file"):
        pull(parse_imgref(f"oci:{tmp_path}"), opts)
    img = resolve(parse_imgref(f"oci:{layout.path}:v1"), opts)
    layout.blob_path(img.layers[1].digest).unlink()
    with pytest.raises(NotFoundError, match="missing from"):
        pull(parse_imgref(f"oci:{layout.path}:v1"), opts)


def test_tampered_layout_blob_is_rejected_and_not_cached(layout: OciLayout,
                                                         opts: PullOptions) -> None:
    img = resolve(parse_imgref(f"oci:{layout.path}:v1"), opts)
    blob = layout.blob_path(img.layers[0].digest)
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(DigestMismatchError, match="does not match its digest"):
        pull(parse_imgref(f"oci:{layout.path}:v1"), opts)
    cache = BlobCache(opts.cache_dir)
    assert not cache.has(img.layers[0].digest)
    # Its partial download is deleted (another layer's may stay, to resume later).
    assert not list((opts.cache_dir / "tmp").glob(f"*{img.layers[0].digest[7:]}*"))


def test_blob_writer_resumes_and_verifies(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path)
    data = b"0123456789" * 1000
    digest = sha256(data)
    with cache.writer(digest, len(data)) as w:
        assert w is not None
        w.write(data[:3000])
        w.close()  # interrupted: the partial stays
    with cache.writer(digest, len(data)) as w:
        assert w is not None and w.offset == 3000 and w.resumed
        w.write(data[3000:])
        w.commit()
    assert cache.blob_path(digest).read_bytes() == data
    with cache.writer(digest, len(data)) as w:
        assert w is None  # already there
    too_big = sha256(b"abc")
    with cache.writer(too_big, 2) as w2:
        assert w2 is not None
        with pytest.raises(DigestMismatchError, match="larger than"):
            w2.write(b"abc")


def test_one_writer_per_blob_across_threads(tmp_path: Path) -> None:
    """flock is per open file, so threads contend like processes do."""
    cache = BlobCache(tmp_path)
    data = b"x" * 100_000
    digest = sha256(data)
    writers = []
    barrier = threading.Barrier(4)

    def worker() -> None:
        barrier.wait()
        with cache.lock(), cache.writer(digest, len(data)) as w:
            writers.append(w is not None)
            if w is not None:
                for i in range(0, len(data), 1000):
                    w.write(data[i:i + 1000])
                w.commit()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert writers.count(True) == 1 and cache.verify(digest)


def test_prune(layout: OciLayout, opts: PullOptions) -> None:
    img = pull(parse_imgref(f"oci:{layout.path}:v1"), opts)
    cache = BlobCache(opts.cache_dir)
    stray = b"stray"
    cache.put_bytes(sha256(stray), stray)
    res = cache.prune()
    assert (res.blobs_removed, res.images_removed) == (1, 0)
    assert cache.has(img.layers[0].digest)
    res = cache.prune(everything=True)
    assert res.images_removed == 1 and not cache.has(img.layers[0].digest)
    assert not cache.images()


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("BOOTC_PY_CACHE_DIR", raising=False)
    assert default_cache_dir() == Path("/var/lib/bootc-py/cache")
    monkeypatch.setenv("BOOTC_PY_CACHE_DIR", str(tmp_path))
    assert default_cache_dir() == tmp_path and PullOptions().cache_dir == tmp_path


@pytest.mark.parametrize(("stderr", "message"), [
    ('time="x" level=fatal msg="initializing source containers-storage:[overlay@/s+/r]docker.io/'
     'library/nope:latest: reference \\"[overlay@/s+/r]docker.io/library/nope:latest\\" does '
     'not resolve to an image ID: identifier is not an image"\n',
     "containers-storage:nope: no such image in the container storage"),
    ('time="x" level=fatal msg="initializing source docker-archive:/n.tar: opening file '
     '\\"/n.tar\\": open /n.tar: no such file or directory"\n',
     "containers-storage:nope: the file does not exist"),
    ('time="x" level=fatal msg="initializing source docker-archive:/etc/passwd: loading tar '
     'component manifest.json: archive/tar: invalid tar header"\n',
     "containers-storage:nope: not a docker-archive tar (as written by 'docker save' or "
     "'podman save')"),
    ('time="x" level=fatal msg="something new"\n',
     "skopeo could not read containers-storage:nope: something new"),
])
def test_skopeo_fatal_text_is_translated(stderr: str, message: str) -> None:
    err = skopeo_error("containers-storage:nope", stderr)
    assert err.message == message
    assert "level=fatal" not in err.message


def test_oci_archive_blobs_read_in_parallel_threads_are_intact(tmp_path: Path) -> None:
    """Layers are fetched by parallel threads: each reads its member through its own file."""
    import tarfile
    from concurrent.futures import ThreadPoolExecutor

    from bootc_py.image.oci_layout import OciArchive

    blobs = {f"blobs/sha256/{i:064x}": os.urandom(300_000 + i) for i in range(8)}
    archive = tmp_path / "a.tar"
    with tarfile.open(archive, "w") as tar:
        (tmp_path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
        tar.add(tmp_path / "oci-layout", "oci-layout")
        (tmp_path / "index.json").write_text('{"schemaVersion": 2, "manifests": []}')
        tar.add(tmp_path / "index.json", "index.json")
        for name, data in blobs.items():
            (tmp_path / "blob").write_bytes(data)
            tar.add(tmp_path / "blob", name)
    layout = OciArchive(archive)

    def read(name: str) -> bytes:
        with layout._open(name) as f:
            chunks = []
            while chunk := f.read(4096):
                chunks.append(chunk)
            return b"".join(chunks)

    with ThreadPoolExecutor(8) as pool:
        for _ in range(5):
            assert list(pool.map(read, blobs)) == list(blobs.values())
