"""Fixtures for the image source against real parts: docker-registry (anonymous and htpasswd),
images pushed with skopeo, umoci as the flatten reference."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from imagefix import PASSWORD, USER, Images, require_tool

from bootc_py.image.source import PullOptions
from image_cases import TRAVERSAL, feature_layers
from oci_builder import LayerBuilder, OciLayout
from registry_fixture import Registry, TokenServer


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Images]:
    root = tmp_path_factory.mktemp("images")
    layout = OciLayout(root / "oci")
    l1, l2, l3 = feature_layers()
    # umoci 0.4.7 reads gzip and plain layers only; the zstd variant is compared to ours.
    layout.add_image("features", [l1.blob("gzip"), l2.blob(""), l3.blob("gzip")],
                     labels={"containers.bootc": "1", "org.example.flavor": "features"})
    layout.add_image("features-zstd", [l1.blob("zstd"), l2.blob("zstd"), l3.blob("zstd")])
    small = [LayerBuilder().dir("etc").file("etc/os-release", b"ID=small\n").blob("gzip"),
             LayerBuilder().file("etc/motd", b"hi\n").blob("gzip")]
    layout.add_image("small", small, labels={"version": "1"})
    big = LayerBuilder().dir("data").file("data/random", os.urandom(4 << 20)).blob("gzip")
    layout.add_image("big", [small[0], big])
    layout.add_index("multi", {"amd64": [small[0]], "arm64": [small[1]]})
    for name, layers in TRAVERSAL.items():
        layout.add_image(f"trav-{name}", [x.blob("gzip") for x in layers])
    yield Images(layout.path, big.digest)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory, images: Images) -> Iterator[Registry]:
    require_tool("docker-registry", "skopeo", "htpasswd")
    with Registry(tmp_path_factory.mktemp("registry")) as reg:
        for tag in ("features", "features-zstd", "small", "big"):
            reg.push(images.layout, tag, f"test/{tag}:1")
        reg.push(images.layout, "multi", "test/multi:1", all_images=True)
        yield reg


@pytest.fixture(scope="session")
def auth_registry(tmp_path_factory: pytest.TempPathFactory,
                  images: Images) -> Iterator[Registry]:
    require_tool("docker-registry", "skopeo", "htpasswd")
    with Registry(tmp_path_factory.mktemp("auth-registry"), users={USER: PASSWORD}) as reg:
        reg.push(images.layout, "small", "private/small:1", creds=f"{USER}:{PASSWORD}")
        yield reg


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory: pytest.TempPathFactory,
                   images: Images) -> Iterator[Registry]:
    """docker-registry with bearer-token auth (`auth: token`), the scheme public registries
    use, and its token service."""
    require_tool("docker-registry", "skopeo", "openssl")
    root = tmp_path_factory.mktemp("token-registry")
    with TokenServer(root / "token", {USER: PASSWORD}) as ts, \
            Registry(root / "registry", token=ts) as reg:
        reg.push(images.layout, "big", "private/big:1", creds=f"{USER}:{PASSWORD}")
        yield reg
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def opts(tmp_path: Path) -> PullOptions:
    """Plain-http loopback registries, a fresh cache, few retries (failures are fast)."""
    return PullOptions(cache_dir=tmp_path / "cache", tls_verify=False, retries=2)
