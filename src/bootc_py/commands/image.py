"""`bootc-py image pull|inspect|unpack|list|prune`: the image source from the command line."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from bootc_py.commands.common import ARCH, AUTHFILE, CACHE_DIR, JOBS, TLS_VERIFY, pull_options
from bootc_py.errors import UsageError
from bootc_py.image import cache as image_cache
from bootc_py.image.ref import ACCEPTED_FORMS, parse_imgref

if TYPE_CHECKING:  # loaded by the commands that pull: `status` and the units need none of it
    from bootc_py.image.source import Image

log = logging.getLogger(__name__)

app = typer.Typer(help="Pull, inspect and unpack container images; manage the image cache.",
                  no_args_is_help=True)

IMGREF_HELP = f"Image reference: {ACCEPTED_FORMS}. Without a transport, registry: is assumed."
def image_json(image: Image) -> dict[str, Any]:
    """What `image inspect` prints."""
    return {
        "name": str(image.ref),
        "digest": image.manifest_digest,
        "index_digest": image.index_digest,
        "architecture": image.architecture,
        "os": image.os,
        "created": image.created,
        "labels": image.labels,
        "size": image.size,
        "layers": [{"digest": x.digest, "diff_id": x.diff_id, "size": x.size,
                    "media_type": x.media_type} for x in image.layers],
        "config_digest": image.config_digest,
        "manifest": image.manifest,
        "config": image.config,
    }


@app.command("pull")
def pull_cmd(
    imgref: str = typer.Argument(..., help=IMGREF_HELP),
    cache_dir: Path = CACHE_DIR,
    tls_verify: str = TLS_VERIFY,
    authfile: Path = AUTHFILE,
    arch: str = ARCH,
    jobs: int = JOBS,
) -> None:
    """Pull an image into the cache (verifying every blob) and print its manifest digest."""
    from bootc_py.image.source import pull

    ref = parse_imgref(imgref)
    image = pull(ref, pull_options(cache_dir, tls_verify, authfile, arch, jobs))
    typer.echo(image.manifest_digest)


@app.command("inspect")
def inspect_cmd(
    imgref: str = typer.Argument(..., help=IMGREF_HELP),
    raw: bool = typer.Option(False, "--raw", help="Print only the manifest."),
    config: bool = typer.Option(False, "--config", help="Print only the image config."),
    cache_dir: Path = CACHE_DIR,
    tls_verify: str = TLS_VERIFY,
    authfile: Path = AUTHFILE,
    arch: str = ARCH,
) -> None:
    """Print an image's digest, labels, layers, manifest and config as JSON (no layer download)."""
    if raw and config:
        raise UsageError("--raw and --config are mutually exclusive")
    from bootc_py.image.source import resolve

    image = resolve(parse_imgref(imgref), pull_options(cache_dir, tls_verify, authfile, arch, 1))
    doc = image.manifest if raw else image.config if config else image_json(image)
    typer.echo(json.dumps(doc, indent=2, sort_keys=not (raw or config)))


@app.command("unpack")
def unpack_cmd(
    imgref: str = typer.Argument(..., help=IMGREF_HELP),
    dest: Path = typer.Argument(..., help="Directory to create (or an empty one)."),
    cache_dir: Path = CACHE_DIR,
    tls_verify: str = TLS_VERIFY,
    authfile: Path = AUTHFILE,
    arch: str = ARCH,
    jobs: int = JOBS,
) -> None:
    """Pull an image and flatten its layers into DIR (the image's root filesystem)."""
    from bootc_py.image.flatten import unpack as flatten_unpack
    from bootc_py.image.source import pull

    ref = parse_imgref(imgref)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise UsageError(f"{dest} exists and is not an empty directory")
    image = pull(ref, pull_options(cache_dir, tls_verify, authfile, arch, jobs))
    flatten_unpack(image, dest)
    log.info("unpacked %s into %s", ref, dest)


@app.command("list")
def list_cmd(
    cache_dir: Path = CACHE_DIR,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List the images in the cache."""
    from bootc_py.image.source import human_size

    cache = image_cache.BlobCache(cache_dir or image_cache.default_cache_dir())
    records = cache.images()
    if as_json:
        typer.echo(json.dumps([r.to_json() for r in records], indent=2))
        return
    if not records:
        print(f"no images in {cache.root}", file=sys.stderr)
        return
    width = max(len("REFERENCE"), *(len(r.ref) for r in records))
    typer.echo(f"{'REFERENCE':<{width}}  {'DIGEST':<19}  {'SIZE':>9}  PULLED")
    for r in records:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.pulled))
        typer.echo(f"{r.ref:<{width}}  {r.manifest_digest[:19]:<19}  "
                   f"{human_size(r.size):>9}  {when}")


@app.command("prune")
def prune_cmd(
    cache_dir: Path = CACHE_DIR,
    all_: bool = typer.Option(False, "--all", help="Forget every image and empty the cache."),
) -> None:
    """Remove cached blobs that no listed image needs (with --all: everything)."""
    from bootc_py.image.source import human_size

    cache = image_cache.BlobCache(cache_dir or image_cache.default_cache_dir())
    res = cache.prune(everything=all_)
    msg = f"removed {res.blobs_removed} blobs, freed {human_size(res.bytes_freed)}"
    if all_:
        msg += f", forgot {res.images_removed} images"
    typer.echo(msg)
