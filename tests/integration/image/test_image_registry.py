"""Pulling from a real docker-registry: formats, cache behaviour, auth, TLS policy, failures."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import requests
from imagefix import PASSWORD, USER, Images, require_tool

from bootc_py.errors import (
    AuthError,
    DigestMismatchError,
    ImageError,
    NotFoundError,
    RegistryError,
    UnsupportedError,
)
from bootc_py.image.cache import BlobCache
from bootc_py.image.ref import parse_imgref
from bootc_py.image.source import PullOptions, pull, resolve
from bootc_py.run import output
from oci_builder import LayerBuilder, OciLayout
from registry_fixture import DroppingProxy, Registry, free_port

pytestmark = pytest.mark.registry  # a docker-registry on 127.0.0.1


def _ref(reg: Registry, name: str) -> str:
    return f"docker://{reg.host}/{name}"


def _skopeo_inspect(ref: str, *extra: str) -> dict[str, object]:
    return json.loads(output(["skopeo", "inspect", "--tls-verify=false", *extra, ref]))  # type: ignore[no-any-return]


@pytest.mark.parametrize("repo", ["test/features:1", "test/features-zstd:1", "test/small:1"])
def test_pull_matches_skopeo_and_second_pull_fetches_nothing(
        registry: Registry, opts: PullOptions, repo: str) -> None:
    ref = parse_imgref(_ref(registry, repo))
    img = pull(ref, opts)
    theirs = _skopeo_inspect(str(ref))
    assert img.manifest_digest == theirs["Digest"]
    assert [x.digest for x in img.layers] == theirs["Layers"]
    assert img.labels == (theirs["Labels"] or {})
    assert img.fetched == img.size > 0
    cache = BlobCache(opts.cache_dir)
    for layer in img.layers:
        assert cache.verify(layer.digest, layer.size)
    again = pull(ref, opts)
    assert again.fetched == 0 and again.manifest_digest == img.manifest_digest
    # A corrupted cached layer is noticed and fetched again (only that one).
    victim = img.layers[-1]
    img.blob_path(victim.digest).write_bytes(b"corrupt")
    assert pull(ref, opts).fetched == victim.size
    assert cache.verify(victim.digest, victim.size)


def test_pull_by_digest(registry: Registry, opts: PullOptions) -> None:
    tagged = pull(parse_imgref(_ref(registry, "test/small:1")), opts)
    pinned = pull(tagged.pinned_ref, opts)
    assert pinned.manifest_digest == tagged.manifest_digest and pinned.fetched == 0
    with pytest.raises(NotFoundError, match="not found"):
        pull(parse_imgref(_ref(registry, "test/small@sha256:" + "0" * 64)), opts)


def test_multi_arch_index(registry: Registry, opts: PullOptions) -> None:
    ref = parse_imgref(_ref(registry, "test/multi:1"))
    amd = pull(ref, opts)
    arm = pull(ref, replace(opts, arch="arm64"))
    assert (amd.architecture, arm.architecture) == ("amd64", "arm64")
    assert amd.index_digest == arm.index_digest == _skopeo_inspect(str(ref))["Digest"]
    assert amd.manifest_digest != arm.manifest_digest
    with pytest.raises(UnsupportedError, match="no image for linux/riscv64"):
        pull(ref, replace(opts, arch="riscv64"))


def test_unknown_image_is_404(registry: Registry, opts: PullOptions) -> None:
    with pytest.raises(NotFoundError, match=r"test/small:nope not found \(MANIFEST_UNKNOWN"):
        pull(parse_imgref(_ref(registry, "test/small:nope")), opts)
    with pytest.raises(NotFoundError, match="not found"):
        pull(parse_imgref(_ref(registry, "no/such-repo:1")), opts)
    assert not BlobCache(opts.cache_dir).images()


@pytest.fixture
def no_default_auth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    empty = tmp_path / "empty-auth.json"
    empty.write_text("{}")
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(empty))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    return empty


def _authfile(path: Path, host: str, user: str, password: str) -> Path:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    path.write_text(json.dumps({"auths": {host: {"auth": token}}}))
    return path


def test_basic_auth(auth_registry: Registry, opts: PullOptions, tmp_path: Path,
                    no_default_auth: Path) -> None:
    ref = parse_imgref(_ref(auth_registry, "private/small:1"))
    with pytest.raises(AuthError, match=f"registry {auth_registry.host} requires authentication"):
        pull(ref, opts)
    wrong = _authfile(tmp_path / "wrong.json", auth_registry.host, USER, "nope")
    with pytest.raises(AuthError, match=f"rejected the credentials for user '{USER}'"):
        pull(ref, replace(opts, authfile=wrong))
    good = _authfile(tmp_path / "good.json", auth_registry.host, USER, PASSWORD)
    img = pull(ref, replace(opts, authfile=good))
    assert img.labels == {"version": "1"}
    # The same credentials found through $REGISTRY_AUTH_FILE.
    os.environ["REGISTRY_AUTH_FILE"] = str(good)
    assert pull(ref, opts).fetched == 0


def test_bearer_token_auth(token_registry: Registry, opts: PullOptions, tmp_path: Path,
                           no_default_auth: Path) -> None:
    assert token_registry.token is not None
    ref = parse_imgref(_ref(token_registry, "private/big:1"))
    with pytest.raises(AuthError, match=f"registry {token_registry.host} requires "
                                        "authentication"):
        pull(ref, opts)
    wrong = _authfile(tmp_path / "wrong.json", token_registry.host, USER, "nope")
    with pytest.raises(AuthError, match=f"rejected the credentials for user '{USER}'"):
        pull(ref, replace(opts, authfile=wrong))
    good = _authfile(tmp_path / "good.json", token_registry.host, USER, PASSWORD)
    before = token_registry.token.issued
    img = pull(ref, replace(opts, authfile=good))
    assert len(img.layers) == 2 and img.fetched == img.size
    # One token, asked for with the pull scope, serves the manifest and parallel blob fetches.
    assert token_registry.token.issued == before + 1


def test_tampered_blob_in_registry_storage(registry: Registry, opts: PullOptions,
                                           tmp_path: Path) -> None:
    layout = OciLayout(tmp_path / "oci")
    layer = LayerBuilder().file("victim", os.urandom(100_000)).blob("gzip")
    layout.add_image("t", [layer])
    ref = parse_imgref(registry.push(layout.path, "t", "test/tampered:1"))
    data = bytearray(registry.blob_file(layer.digest).read_bytes())
    data[len(data) // 2] ^= 0xFF
    registry.blob_file(layer.digest).write_bytes(bytes(data))
    with pytest.raises(DigestMismatchError, match=f"layer {layer.digest[:19]} does not match its "
                                                  "digest .*the download was deleted"):
        pull(ref, opts)
    cache = BlobCache(opts.cache_dir)
    assert not cache.has(layer.digest) and not cache.images()
    assert not list((opts.cache_dir / "tmp").glob("*.partial"))


def test_dropped_connection_resumes_with_range(registry: Registry, images: Images,
                                               opts: PullOptions) -> None:
    with DroppingProxy(registry.host, images.big_layer, cut_after=256 << 10) as proxy:
        img = pull(parse_imgref(f"docker://{proxy.host}/test/big:1"), opts)
    ranged = [r for r in proxy.requests if images.big_layer in r and "Range: bytes=" in r]
    assert len(ranged) == 1, proxy.requests
    start = int(ranged[0].rsplit("=", 1)[1].rstrip("-"))
    assert 0 < start <= 256 << 10
    assert BlobCache(opts.cache_dir).verify(images.big_layer)
    # Bytes counted once: the resumed request did not fetch the first part again.
    assert img.fetched == img.size


def test_connection_dropped_every_time_fails_then_resumes_later(
        registry: Registry, images: Images, opts: PullOptions,
        caplog: pytest.LogCaptureFixture) -> None:
    with DroppingProxy(registry.host, images.big_layer, cut_after=200 << 10, times=99,
                       cut_ranged=True) as proxy, pytest.raises(
            RegistryError, match=f"downloading blob {images.big_layer[:19]} from {proxy.host} "
                                 "failed after 3 attempts"):
        pull(parse_imgref(f"docker://{proxy.host}/test/big:1"), opts)
    cache = BlobCache(opts.cache_dir)
    assert not cache.has(images.big_layer) and not cache.images()
    (partial,) = (opts.cache_dir / "tmp").glob(f"*{images.big_layer[7:]}.partial")
    kept = partial.stat().st_size
    assert kept > 0  # every attempt made progress, and it is kept to resume from
    caplog.set_level("INFO", logger="bootc_py")
    img = pull(parse_imgref(_ref(registry, "test/big:1")), opts)
    assert cache.verify(images.big_layer)
    assert f"resuming blob {images.big_layer[:19]} at byte {kept}" in caplog.text
    big = next(x for x in img.layers if x.digest == images.big_layer)
    assert img.fetched == big.size - kept  # the first part was not downloaded again


def test_retries_on_5xx_and_429_honouring_retry_after(registry: Registry,
                                                      opts: PullOptions) -> None:
    busy = [(503, "0"), (429, "1"), (502, "0")]
    with DroppingProxy(registry.host, busy=list(busy)) as proxy:
        t0 = time.monotonic()
        img = pull(parse_imgref(f"docker://{proxy.host}/test/small:1"),
                   replace(opts, retries=4))
        elapsed = time.monotonic() - t0
    assert img.labels == {"version": "1"} and not proxy.busy
    assert elapsed >= 1.0  # Retry-After: 1 was honoured
    with DroppingProxy(registry.host, busy=[(503, "0")] * 10) as proxy, pytest.raises(
            RegistryError, match=r"answered HTTP 503 for image .*test/small:1"):
        pull(parse_imgref(f"docker://{proxy.host}/test/small:1"), replace(opts, retries=2))


def test_registry_down(opts: PullOptions) -> None:
    port = free_port()
    t0 = time.monotonic()
    with pytest.raises(RegistryError, match=f"cannot reach registry 127.0.0.1:{port} "
                                            r"\(.*Connection refused"):
        pull(parse_imgref(f"docker://127.0.0.1:{port}/x:1"), opts)
    assert time.monotonic() - t0 < 10


def test_a_name_without_transport_or_host_that_fails_says_it_meant_docker_hub(
        registry: Registry, opts: PullOptions, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 11: 'nosuchtransport:thing' is a valid Docker Hub name; when it fails the user is
    told that is how it was read, and which transports exist (docker.io relocated to the
    local registry, so nothing leaves 127.0.0.1)."""
    conf = tmp_path / "registries.conf"
    conf.write_text(f'[[registry]]\nprefix = "docker.io"\nlocation = "{registry.host}"\n'
                    'insecure = true\n')
    monkeypatch.setenv("CONTAINERS_REGISTRIES_CONF", str(conf))
    with pytest.raises(NotFoundError, match="not found") as exc:
        pull(parse_imgref("nosuchtransport:thing"), opts)
    hint = exc.value.hint or ""
    assert "read as the Docker Hub image docker://docker.io/library/nosuchtransport:thing" \
        in hint, hint
    assert "oci-archive:" in hint and "containers-storage:" in hint, hint
    with pytest.raises(NotFoundError) as exc:
        pull(parse_imgref(_ref(registry, "no/such-repo:1")), opts)
    assert "Docker Hub" not in (exc.value.hint or "")


def test_tls_is_verified_by_default(registry: Registry, opts: PullOptions, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    ref = parse_imgref(_ref(registry, "test/small:1"))
    secure = replace(opts, tls_verify=None)
    monkeypatch.setenv("CONTAINERS_REGISTRIES_CONF", str(tmp_path / "none.conf"))
    with pytest.raises(RegistryError, match="TLS handshake failed") as exc:
        pull(ref, secure)
    assert exc.value.hint is not None and "--tls-verify=false" in exc.value.hint
    with pytest.raises(RegistryError, match="TLS"):
        pull(ref, replace(opts, tls_verify=True))
    conf = tmp_path / "registries.conf"
    conf.write_text(f'[[registry]]\nlocation = "{registry.host}"\ninsecure = true\n')
    monkeypatch.setenv("CONTAINERS_REGISTRIES_CONF", str(conf))
    assert pull(ref, secure).labels == {"version": "1"}
    conf.write_text(f'[[registry]]\nlocation = "{registry.host}"\nblocked = true\n')
    with pytest.raises(RegistryError, match=r"blocked in registries\.conf"):
        pull(ref, secure)


def _put_manifest(reg: Registry, repo: str, tag: str, doc: dict[str, object]) -> None:
    r = requests.put(f"http://{reg.host}/v2/{repo}/manifests/{tag}", data=json.dumps(doc),
                     headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
                     timeout=10)
    assert r.status_code == 201, r.text


def test_malformed_manifest_and_unsupported_media_type(registry: Registry,
                                                       opts: PullOptions) -> None:
    base = f"http://{registry.host}/v2/test/small/manifests/1"
    good = requests.get(base, headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
                        timeout=10).json()
    _put_manifest(registry, "test/small", "nolayers", {k: v for k, v in good.items()
                                                       if k != "layers"})
    _put_manifest(registry, "test/small", "bzip2", {**good, "layers": [
        {**good["layers"][0], "mediaType": "application/vnd.oci.image.layer.v1.tar+bzip2"}]})
    with pytest.raises(ImageError, match=r"malformed manifest of .*'layers' is not a list"):
        pull(parse_imgref(_ref(registry, "test/small:nolayers")), opts)
    with pytest.raises(UnsupportedError, match=r"layers\[0\] has unsupported media type "
                                                "'application/vnd.oci.image.layer.v1.tar"
                                                r"\+bzip2'"):
        pull(parse_imgref(_ref(registry, "test/small:bzip2")), opts)
    cache = BlobCache(opts.cache_dir)
    assert not cache.images()
    assert not any(cache.has(x["digest"]) for x in good["layers"])  # no layer was fetched


def test_resolve_only_reads_manifest_and_config(registry: Registry, opts: PullOptions) -> None:
    img = resolve(parse_imgref(_ref(registry, "test/big:1")), opts)
    assert not BlobCache(opts.cache_dir).has(img.layers[1].digest)


def test_two_processes_share_one_cache(registry: Registry, tmp_path: Path) -> None:
    """Two real `bootc-py image pull` processes on one cache: each blob is fetched once."""
    cache = tmp_path / "shared"
    ref = _ref(registry, "test/big:1")
    procs, fds = [], []
    for i in range(2):
        fd = os.open(tmp_path / f"progress{i}.jsonl", os.O_WRONLY | os.O_CREAT, 0o600)
        fds.append(fd)
        procs.append(subprocess.Popen(
            [str(Path(sys.executable).parent / "bootc-py"), "--progress-fd", str(fd), "image",
             "pull", "--tls-verify=false", "--cache-dir", str(cache), ref],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, pass_fds=(fd,)))
    results = [p.communicate(timeout=120) for p in procs]
    for fd in fds:
        os.close(fd)
    assert [p.returncode for p in procs] == [0, 0], results
    assert results[0][0] == results[1][0]  # the same digest printed by both
    downloaded = 0
    for i in range(2):
        events = [json.loads(x) for x in (tmp_path / f"progress{i}.jsonl").read_text()
                  .splitlines()]
        assert events[0]["type"] == "Start"
        pulls = [e for e in events if e["type"] == "ProgressBytes" and e["task"] == "pull"]
        downloaded += pulls[-1]["bytes"] if pulls else 0
    img = resolve(parse_imgref(ref), PullOptions(cache_dir=cache, tls_verify=False))
    assert downloaded == img.size  # not twice
    assert all(BlobCache(cache).verify(x.digest) for x in img.layers)


def test_docker_archive_and_containers_storage_through_skopeo(images: Images, tmp_path: Path,
                                                              opts: PullOptions) -> None:
    require_tool("skopeo")
    archive = tmp_path / "img.tar"
    output(["skopeo", "copy", "--quiet", images.oci("small"),
            f"docker-archive:{archive}:localhost/small:1"])
    img = pull(parse_imgref(f"docker-archive:{archive}"), opts)
    assert img.labels == {"version": "1"} and len(img.layers) == 2
    store = f"[vfs@{tmp_path}/storage+{tmp_path}/run]"
    output(["skopeo", "copy", "--quiet", images.oci("small"),
            f"containers-storage:{store}localhost/small:1"])
    img2 = pull(parse_imgref(f"containers-storage:{store}localhost/small:1"), opts)
    assert img2.labels == {"version": "1"}
    assert [x.diff_id for x in img2.layers] == [x.diff_id for x in img.layers]
    assert not list((opts.cache_dir / "tmp").glob("skopeo-*"))  # temporary layout removed
