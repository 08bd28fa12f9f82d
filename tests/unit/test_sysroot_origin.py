"""The origin file: rendered and parsed in one place (store/sysroot.Origin)."""

from __future__ import annotations

import pytest

from bootc_py.store.sysroot import Origin

DIGEST = "sha256:" + "ab" * 32


def test_registry_origin_renders_as_bootc_spells_it() -> None:
    text = Origin("docker://127.0.0.1:5000/os/syn:1", DIGEST).render()
    assert text == ("[origin]\n"
                    "container-image-reference=ostree-unverified-registry:127.0.0.1:5000/os/syn:1\n"
                    "\n[bootc-py]\n"
                    "imgref=docker://127.0.0.1:5000/os/syn:1\n"
                    f"manifest-digest={DIGEST}\n")


@pytest.mark.parametrize("imgref", ["docker://127.0.0.1:5000/os/syn:1", "oci:/mnt/usb/os:v2",
                                    "oci-archive:/srv/os.tar", "containers-storage:localhost/x"])
def test_render_parse_round_trip(imgref: str) -> None:
    origin = Origin(imgref, DIGEST)
    assert Origin.parse(origin.render()) == origin
    assert Origin.parse(Origin(imgref).render()) == Origin(imgref, None)


def test_parses_an_origin_bootc_wrote() -> None:
    text = "[origin]\ncontainer-image-reference=ostree-unverified-registry:quay.io/x/y:latest\n"
    assert Origin.parse(text) == Origin("docker://quay.io/x/y:latest", None)
    text = "[origin]\ncontainer-image-reference=ostree-unverified-image:oci:/srv/os\n"
    assert Origin.parse(text) == Origin("oci:/srv/os", None)


@pytest.mark.parametrize("text", ["", "[origin]\nrefspec=debian:debian/bookworm\n",
                                  "not an ini file at all [", "[bootc-py]\nimgref=\n"])
def test_an_origin_without_an_image_is_none(text: str) -> None:
    assert Origin.parse(text) is None
