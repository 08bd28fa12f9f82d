from __future__ import annotations

import os

import pytest

from bootc_py.errors import ImageRefError
from bootc_py.image.ref import ImageRef, Transport, parse_imgref

D = "sha256:" + "ab" * 32


@pytest.mark.parametrize(("text", "canonical", "registry", "repository", "tag", "digest"), [
    ("fedora", "docker://docker.io/library/fedora:latest", "docker.io", "library/fedora",
     "latest", None),
    ("fedora:40", "docker://docker.io/library/fedora:40", "docker.io", "library/fedora", "40",
     None),
    ("user/app", "docker://docker.io/user/app:latest", "docker.io", "user/app", "latest", None),
    ("index.docker.io/library/debian:12", "docker://docker.io/library/debian:12", "docker.io",
     "library/debian", "12", None),
    ("quay.io/fedora/fedora-bootc:41", "docker://quay.io/fedora/fedora-bootc:41", "quay.io",
     "fedora/fedora-bootc", "41", None),
    ("docker://127.0.0.1:5000/x:1", "docker://127.0.0.1:5000/x:1", "127.0.0.1:5000", "x", "1",
     None),
    ("registry:localhost/a/b", "docker://localhost/a/b:latest", "localhost", "a/b", "latest",
     None),
    ("localhost:5000/x", "docker://localhost:5000/x:latest", "localhost:5000", "x", "latest",
     None),
    (f"docker://reg.example.com/x@{D}", f"docker://reg.example.com/x@{D}", "reg.example.com",
     "x", None, D),
    (f"registry:reg.example.com/x:1@{D}", f"docker://reg.example.com/x:1@{D}",
     "reg.example.com", "x", "1", D),
    ("ostree-unverified-registry:quay.io/x/y:2", "docker://quay.io/x/y:2", "quay.io", "x/y",
     "2", None),
    ("[::1]:5000/img", "docker://[::1]:5000/img:latest", "[::1]:5000", "img", "latest", None),
])
def test_registry_refs(text: str, canonical: str, registry: str, repository: str,
                       tag: str | None, digest: str | None) -> None:
    ref = parse_imgref(text)
    assert ref.transport is Transport.REGISTRY
    assert str(ref) == canonical
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repository, tag,
                                                                    digest)
    assert parse_imgref(str(ref)) == ref  # the canonical spelling parses back to the same ref
    assert ref.bootc_spelling == "registry:" + canonical.removeprefix("docker://")


def test_path_transports() -> None:
    ref = parse_imgref("oci:/srv/layout:v1")
    assert (ref.transport, ref.name, ref.tag, str(ref)) == (
        Transport.OCI, "/srv/layout", "v1", "oci:/srv/layout:v1")
    rel = parse_imgref("oci:rel/dir")
    assert rel.name == os.path.abspath("rel/dir") and rel.tag is None
    assert str(parse_imgref("oci-archive:/a/img.tar")) == "oci-archive:/a/img.tar"
    dock = parse_imgref("docker-archive:/a/img.tar:app:1")
    assert (dock.transport, dock.name, dock.tag) == (Transport.DOCKER_ARCHIVE, "/a/img.tar",
                                                     "app:1")
    cs = parse_imgref("containers-storage:[overlay@/var/s+/run/s]localhost/x:1")
    assert cs.transport is Transport.CONTAINERS_STORAGE
    assert str(cs) == "containers-storage:[overlay@/var/s+/run/s]localhost/x:1"
    assert parse_imgref("ostree-unverified-image:oci:/l:t") == ImageRef(Transport.OCI, "/l", "t")


def test_with_digest_pins() -> None:
    ref = parse_imgref("quay.io/x:1").with_digest(D)
    assert str(ref) == f"docker://quay.io/x@{D}" and ref.reference == D


@pytest.mark.parametrize(("text", "why"), [
    ("", "empty"),
    ("   ", "empty"),
    ("a b", "whitespace"),
    ("Quay.io/UPPER", "not a valid repository name"),
    ("x@sha256:1234", "is not a digest"),
    ("x:bad!tag", "not a valid tag"),
    ("docker://", "no image name"),
    ("http://example.com/x", "unknown transport"),
    ("dir:/tmp/x", "transport 'dir:' is not supported"),
    ("oci:", "no path"),
    ("oci:/x:", "empty tag"),
    ("containers-storage:", "no image name"),
    ("bad_host:99999999999/x", "not a valid"),
])
def test_malformed_refs_name_the_accepted_forms(text: str, why: str) -> None:
    with pytest.raises(ImageRefError) as exc:
        parse_imgref(text)
    assert why in str(exc.value)
    assert exc.value.hint is not None and "docker://HOST/NAME" in exc.value.hint
    assert "oci:DIR[:TAG]" in exc.value.hint


@pytest.mark.parametrize(("text", "prefix"), [
    ("nosuchtransport:/some/dir", "nosuchtransport:"),
    ("oci-achive:foo.tar", "oci-achive:"),
    ("containers-storag:fedora", "containers-storag:"),
])
def test_mistyped_transport_names_the_transports(text: str, prefix: str) -> None:
    with pytest.raises(ImageRefError) as err:
        parse_imgref(text)
    assert err.value.message == (
        f"invalid image reference '{text}': unknown transport '{prefix}' (transports: "
        "docker://, registry:, oci:, oci-archive:, containers-storage:, docker-archive:)")


@pytest.mark.parametrize("text", ["fedora:40", "localhost:5000/x:1", "[::1]:5000/img"])
def test_name_tag_and_host_port_are_not_taken_for_transports(text: str) -> None:
    assert parse_imgref(text).transport.value == "registry"


@pytest.mark.parametrize(("text", "short"), [
    ("nosuchtransport:thing", True), ("fedora", True), ("quay.io/fedora/fedora:40", False),
    ("docker.io/library/debian:12", False), ("docker://fedora:40", False),
    ("registry:fedora", False), ("localhost:5000/x:1", False)])
def test_a_name_without_transport_or_host_is_marked_as_read_from_docker_hub(
        text: str, short: bool) -> None:
    """A failed pull of such a name says it was read as Docker Hub's (issue 11); the mark
    does not make two spellings of one image unequal."""
    ref = parse_imgref(text)
    assert ref.short_name is short
    if short:
        assert ref == parse_imgref(f"docker://{ref.name}:{ref.tag}")
        assert f"Docker Hub image {ref}" in ref.short_name_hint
