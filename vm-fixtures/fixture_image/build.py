"""Put the three layers together into an OCI image in a layout directory (and push it)."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fixture_image.bootclayer import build_bootc_layer, normalize_modes
from fixture_image.cache import Cache, LayerRecord
from fixture_image.errors import FixtureError
from fixture_image.oci import (
    MEDIA_CONFIG,
    MEDIA_LAYER_GZIP,
    MEDIA_MANIFEST,
    Blob,
    Layout,
    canonical_json,
    write_layer,
)
from fixture_image.oslayer import build_os_layer
from fixture_image.proc import run, say, step
from fixture_image.recipe import STAGED_MTIME, VARIANTS, Variant, bootc_layer_key, os_layer_key

MARKER_PATH = "usr/share/bootc-py-fixture/variant"
HEALTH_DIR = "usr/lib/greenboot/check/required.d"  # greenboot layout: a required check
# A file of the image's /etc that differs between variants: an update's /etc change that the
# 3-way merge must carry onto a host whose admin never touched it.
ETC_MARKER_PATH = "etc/bootc-py-fixture/variant.conf"


@dataclass(frozen=True)
class BuildResult:
    variant: str
    layout: Path
    tag: str
    manifest_digest: str
    layers: tuple[Blob, ...]
    built: tuple[str, ...]          # which layers were built now (the rest came from the cache)
    layer_keys: tuple[str, str]     # cache keys of the OS and bootc-py layers
    kver: str
    seconds: float

    @property
    def ref(self) -> str:
        return f"oci:{self.layout}:{self.tag}"


def parse_oci_output(spec: str, *, tag_required: bool = True) -> tuple[Path, str | None]:
    """`oci:DIR:TAG` (or `oci:DIR` when the tag is optional) -> (DIR, TAG or None)."""
    if not spec.startswith("oci:") or len(spec) == 4:
        raise FixtureError(f"--output must be oci:DIR:TAG, got {spec!r}")
    rest = spec[4:]
    directory, sep, tag = rest.rpartition(":")
    if not sep or "/" in tag or not directory:
        if tag_required:
            raise FixtureError(f"--output must be oci:DIR:TAG, got {spec!r}")
        return Path(rest).resolve(), None
    if not tag:
        raise FixtureError(f"--output must be oci:DIR:TAG, got {spec!r}")
    return Path(directory).resolve(), tag


def build_top_layer(variant: Variant, work: Path) -> Blob:
    tree = work / "top"
    marker = tree / MARKER_PATH
    marker.parent.mkdir(parents=True)
    marker.write_text(variant.name + "\n")
    etc_marker = tree / ETC_MARKER_PATH
    etc_marker.parent.mkdir(parents=True)
    etc_marker.write_text(f"# from the image (bootc-py sample variant)\nvariant={variant.name}\n")
    name, content = variant.health_script
    health = tree / HEALTH_DIR / name
    health.parent.mkdir(parents=True)
    health.write_text(content)
    health.chmod(0o755)
    normalize_modes(tree)
    return write_layer(tree, work / "top.tar.gz", mtime=STAGED_MTIME, owner=(0, 0))


def image_config(variant: Variant, layers: list[LayerRecord], top: Blob,
                 kver: str) -> dict[str, Any]:
    created = layers[0].created
    labels = {
        "containers.bootc": "1",
        "ostree.bootable": "1",
        "org.opencontainers.image.version": variant.version,
        "org.opencontainers.image.title": f"bootc-py sample image ({variant.name})",
        "org.opencontainers.image.description":
            "Debian bookworm bootable container image for bootc-py's tests",
        "bootc-py.fixture.variant": variant.name,
        "ostree.linux": kver,
    }
    history = [
        {"created": created, "created_by": "bootc-py fixture: OS (mmdebstrap bookworm + dracut)"},
        {"created": created, "created_by": "bootc-py fixture: bootc-py + check unit"},
        {"created": created, "created_by": f"bootc-py fixture: variant {variant.name}"},
    ]
    return {
        "created": created,
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Labels": labels,
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/bin/bash"],
        },
        "rootfs": {"type": "layers",
                   "diff_ids": [r.blob.diff_id for r in layers] + [top.diff_id]},
        "history": history,
    }


def lower_layers(cache: Cache) -> tuple[LayerRecord, LayerRecord, list[str]]:
    """The OS and bootc-py layers, from the cache or built now (and which were built)."""
    built = []
    os_rec, fresh = cache.get_or_build("os", os_layer_key(), build_os_layer)
    if fresh:
        built.append("os")
    else:
        say(f"os layer: from cache ({os_rec.blob.digest[:19]}, kernel {os_rec.meta['kver']})")
    bootc_rec, fresh = cache.get_or_build("bootc-py", bootc_layer_key(), build_bootc_layer)
    if fresh:
        built.append("bootc-py")
        say(f"bootc-py layer: built ({bootc_rec.blob.digest[:19]})")
    else:
        say(f"bootc-py layer: from cache ({bootc_rec.blob.digest[:19]})")
    return os_rec, bootc_rec, built


def build_images(variants: list[str], layout_dir: Path, tags: list[str] | None = None, *,
                 cache: Cache | None = None) -> list[BuildResult]:
    """Build several variants into one layout from one snapshot of the lower layers.

    They share the OS and bootc-py blobs even if bootc-py's source changes meanwhile.
    Tags default to the variant names.
    """
    t0 = time.monotonic()
    tags = tags or list(variants)
    for name in variants:
        if name not in VARIANTS:
            raise FixtureError(f"unknown variant {name!r} (known: {', '.join(VARIANTS)})")
    cache = cache or Cache()
    os_rec, bootc_rec, built = lower_layers(cache)
    kver = str(os_rec.meta["kver"])
    layout_dir = layout_dir.resolve()
    layout = Layout(layout_dir)
    layout_dir.parent.mkdir(parents=True, exist_ok=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="bootc-py-top-") as tmp, layout.lock():
        layout.init()
        for rec in (os_rec, bootc_rec):
            layout.put_file(rec.blob.digest, cache.blob_path(rec.blob))
        for name, tag in zip(variants, tags, strict=True):
            variant = VARIANTS[name]
            work = Path(tmp) / name
            top = build_top_layer(variant, work)
            layout.put_file(top.digest, work / "top.tar.gz")
            config = canonical_json(image_config(variant, [os_rec, bootc_rec], top, kver))
            config_digest = layout.put_bytes(config)
            manifest = {
                "schemaVersion": 2,
                "mediaType": MEDIA_MANIFEST,
                "config": {"mediaType": MEDIA_CONFIG, "digest": config_digest,
                           "size": len(config)},
                "layers": [{"mediaType": MEDIA_LAYER_GZIP, "digest": b.digest, "size": b.size}
                           for b in (os_rec.blob, bootc_rec.blob, top)],
                "annotations": {"org.opencontainers.image.version": variant.version},
            }
            digest = layout.tag(tag, canonical_json(manifest))
            result = BuildResult(variant=name, layout=layout_dir, tag=tag,
                                 manifest_digest=digest,
                                 layers=(os_rec.blob, bootc_rec.blob, top), built=tuple(built),
                                 layer_keys=(os_rec.key, bootc_rec.key), kver=kver,
                                 seconds=time.monotonic() - t0)
            say(f"wrote {result.ref} ({digest[:19]}) in {result.seconds:.1f} s")
            results.append(result)
    return results


def build_image(variant_name: str, output: str, *, push: str | None = None,
                cache: Cache | None = None) -> BuildResult:
    """Build `variant_name` into the OCI layout named by `output` (`oci:DIR[:TAG]`)."""
    layout_dir, tag = parse_oci_output(output, tag_required=False)
    [result] = build_images([variant_name], layout_dir, [tag or variant_name], cache=cache)
    if push:
        push_image(result, push)
    return result


def push_image(result: BuildResult, dest: str) -> None:
    """skopeo copy to `HOST[:PORT]/NAME[:TAG]` (plain HTTP for a loopback registry)."""
    if "://" in dest or "/" not in dest:
        raise FixtureError(f"--push wants HOST:PORT/NAME:TAG, got {dest!r}")
    host = dest.split("/", 1)[0].split(":", 1)[0]
    insecure = host in ("127.0.0.1", "localhost", "::1", "[::1]")
    argv = ["skopeo", "copy", "--quiet"]
    if insecure:
        argv.append("--dest-tls-verify=false")
    with step(f"pushing to {dest}"):
        run([*argv, result.ref, f"docker://{dest}"])
