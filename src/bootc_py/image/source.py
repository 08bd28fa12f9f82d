"""Pull an image from any transport into the blob cache and describe it.

`pull(ref, opts)` fetches the manifest (choosing the platform from an index), the config and every
layer into the cache, verifying each blob's digest, and returns an `Image` whose blobs are all
there. `resolve(ref, opts)` stops after the config (what `inspect` and update checks need).
containers-storage: and docker-archive: images are first copied by skopeo into a temporary OCI
layout inside the cache, then read like oci:. containers-storage keeps layers uncompressed, so that
copy is re-compressed and its manifest digest is not the stored image's: the digest recorded
(origin, status, `image inspect`) is the stored image's own, as `podman images --digests` shows it.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bootc_py import log as blog
from bootc_py.errors import (
    BootcPyError,
    CommandError,
    DigestMismatchError,
    ImageError,
    NoSpaceError,
    NotFoundError,
    UnsupportedError,
)
from bootc_py.image import digest as dg
from bootc_py.image import mediatypes as mt
from bootc_py.image import registries_conf
from bootc_py.image.cache import BlobCache, BlobWriter, ImageRecord, default_cache_dir
from bootc_py.image.oci_layout import Layout, OciArchive, OciDir, load_json_object
from bootc_py.image.ref import ImageRef, Transport
from bootc_py.run import run

log = logging.getLogger(__name__)

CONFIG_LIMIT = 16 << 20
_COPY_CHUNK = 1 << 20

# Architecture spellings people use -> the GOARCH names images use.
ARCH_ALIASES = {"x86_64": "amd64", "aarch64": "arm64", "armhf": "arm", "armv7l": "arm",
                "ppc64el": "ppc64le", "i386": "386", "i686": "386"}


@dataclass(frozen=True)
class PullOptions:
    cache_dir: Path = field(default_factory=default_cache_dir)
    tls_verify: bool | None = None  # None: verify, unless registries.conf says insecure
    authfile: Path | None = None
    arch: str = "amd64"
    jobs: int = 4  # parallel layer downloads
    os: str = "linux"
    variant: str | None = None
    retries: int = 4
    # registries.conf.d directories read after the standard ones (a --sysroot target's own).
    registries_dropins: tuple[Path, ...] = ()


@dataclass(frozen=True)
class Layer:
    digest: str  # of the blob as stored (compressed)
    diff_id: str  # of the uncompressed tar, from the config
    size: int
    media_type: str


@dataclass(frozen=True)
class Image:
    ref: ImageRef
    manifest_digest: str
    manifest: dict[str, Any]
    config_digest: str
    config: dict[str, Any]
    layers: tuple[Layer, ...]
    cache_dir: Path
    index_digest: str | None = None  # set when the reference named an index / manifest list
    fetched: int = field(default=0, compare=False)  # blob bytes this pull downloaded

    @property
    def labels(self) -> dict[str, str]:
        labels = (self.config.get("config") or {}).get("Labels") or {}
        return {str(k): str(v) for k, v in labels.items()}

    @property
    def architecture(self) -> str:
        return str(self.config.get("architecture", ""))

    @property
    def os(self) -> str:
        return str(self.config.get("os", ""))

    @property
    def created(self) -> str | None:
        c = self.config.get("created")
        return str(c) if c else None

    @property
    def size(self) -> int:
        """Bytes of all layer blobs."""
        return sum(layer.size for layer in self.layers)

    @property
    def pinned_ref(self) -> ImageRef:
        """The reference pinned to this manifest (registry transport; others unchanged)."""
        if self.ref.transport is Transport.REGISTRY:
            return self.ref.with_digest(self.manifest_digest)
        return self.ref

    def blob_path(self, digest: str) -> Path:
        """The verified blob in the cache (ImageError if it is not there: pull first)."""
        path = BlobCache(self.cache_dir).blob_path(digest)
        if not path.is_file():
            raise ImageError(f"blob {dg.short(digest)} of {self.ref} is not in the cache "
                             f"{self.cache_dir}; pull the image first")
        return path


# Parsing and validating what sources send.

@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int


def _descriptor(d: Any, what: str) -> Descriptor:
    if not isinstance(d, dict):
        raise ImageError(f"malformed {what}: not an object")
    digest, size, media_type = d.get("digest"), d.get("size"), d.get("mediaType", "")
    if not isinstance(digest, str) or not dg.is_digest(digest):
        raise ImageError(f"malformed {what}: invalid digest {digest!r}")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ImageError(f"malformed {what}: invalid size {size!r}")
    if not isinstance(media_type, str):
        raise ImageError(f"malformed {what}: invalid mediaType {media_type!r}")
    return Descriptor(media_type, digest, size)


def _media_type(doc: dict[str, Any], hint: str | None, what: str) -> str:
    """The manifest's media type: its own mediaType field, else the transport's, else a guess."""
    declared = doc.get("mediaType")
    if isinstance(declared, str) and declared:
        return declared
    if doc.get("schemaVersion") == 1:
        return mt.DOCKER_MANIFEST_V1
    if hint and hint in mt.INDEXES | mt.MANIFESTS:
        return hint
    if "manifests" in doc:
        return mt.OCI_INDEX
    if "config" in doc and "layers" in doc:
        return mt.OCI_MANIFEST
    raise ImageError(f"malformed {what}: neither a manifest nor an index")


def _norm_arch(arch: str) -> str:
    return ARCH_ALIASES.get(arch, arch)


def select_platform(index: dict[str, Any], opts: PullOptions, what: str) -> Descriptor:
    """The index entry for opts.os/opts.arch (and variant), as containers/image chooses it."""
    manifests = index.get("manifests")
    if not isinstance(manifests, list):
        raise ImageError(f"malformed {what}: no 'manifests' list")
    want_arch = _norm_arch(opts.arch)
    have: list[str] = []
    matches: list[tuple[int, Descriptor]] = []
    for i, m in enumerate(manifests):
        desc = _descriptor(m, f"{what}: manifests[{i}]")
        plat = m.get("platform") or {}
        annotations = m.get("annotations") or {}
        if annotations.get("vnd.docker.reference.type") == "attestation-manifest":
            continue
        p_os, p_arch = str(plat.get("os", "")), _norm_arch(str(plat.get("architecture", "")))
        p_var = str(plat.get("variant", ""))
        if p_os and p_arch and p_os != "unknown":
            have.append(f"{p_os}/{p_arch}" + (f"/{p_var}" if p_var else ""))
        if p_os != opts.os or p_arch != want_arch:
            continue
        if opts.variant and p_var and p_var != opts.variant:
            continue
        # Prefer an exact variant match, then no variant (e.g. arm64 without "v8").
        rank = 0 if (opts.variant or "") == p_var else 1
        matches.append((rank, desc))
    if not matches:
        raise UnsupportedError(
            f"{what} has no image for {opts.os}/{want_arch}"
            + (f" (it has: {', '.join(sorted(set(have)))})" if have else ""),
            hint="pick another architecture with --arch")
    return min(matches, key=lambda t: t[0])[1]


def _manifest_descriptors(doc: dict[str, Any], what: str
                          ) -> tuple[Descriptor, tuple[Descriptor, ...]]:
    if doc.get("schemaVersion") != 2:
        raise ImageError(f"malformed {what}: schemaVersion is {doc.get('schemaVersion')!r}, "
                         "not 2")
    config = _descriptor(doc.get("config"), f"{what}: config")
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise ImageError(f"malformed {what}: 'layers' is not a list")
    descs = tuple(_descriptor(x, f"{what}: layers[{i}]") for i, x in enumerate(layers))
    if config.media_type and config.media_type not in mt.CONFIGS:
        raise UnsupportedError(f"{what} is not a container image (config media type "
                               f"'{config.media_type}')")
    for i, layer in enumerate(descs):
        if layer.media_type not in mt.LAYERS:
            raise UnsupportedError(
                f"{what}: layers[{i}] has unsupported media type '{layer.media_type}'",
                hint="supported: tar, tar+gzip, tar+zstd (OCI) and Docker's tar.gzip")
    return config, descs


def _diff_ids(config: dict[str, Any], n_layers: int, what: str) -> list[str]:
    rootfs = config.get("rootfs")
    ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(ids, list) or not all(isinstance(x, str) and dg.is_digest(x) for x in ids):
        raise ImageError(f"malformed {what}: rootfs.diff_ids missing or invalid")
    if len(ids) != n_layers:
        raise ImageError(f"malformed {what}: {len(ids)} diff_ids for {n_layers} layers")
    return [str(x) for x in ids]


# Where blobs come from.

class _Fetcher(Protocol):
    # The digest the source itself calls the image by, when the manifest root() returns is a
    # re-encoded copy (containers-storage); None: root()'s manifest is the image's own.
    own_digest: str | None

    def root(self) -> tuple[bytes, str | None, str | None]:
        """(manifest or index bytes, media type hint, the digest they must have, if known)"""

    def manifest(self, digest: str) -> bytes: ...

    def blob(self, digest: str, writer: BlobWriter, progress: blog.ByteProgress | None,
             cancel: threading.Event) -> None: ...


class _RegistryFetcher:
    own_digest: str | None = None

    def __init__(self, ref: ImageRef, opts: PullOptions) -> None:
        # Here, not at the top: requests and urllib3 cost a reader of sysroots (`status`, the
        # boot-time units on a slow machine) more than it spends on its own work.
        from bootc_py.image.registry import ClientOptions, RegistryClient, pull_sources

        self.ref = ref
        copts = ClientOptions(tls_verify=opts.tls_verify, authfile=opts.authfile,
                              retries=opts.retries)
        conf = registries_conf.load(extra_dropins=opts.registries_dropins)
        self.clients = [RegistryClient(ref, copts, conf, source)
                        for source in pull_sources(ref, conf)]
        self.client = self.clients[-1]

    def _manifest_from_a_source(self) -> tuple[bytes, str, str | None]:
        """Like containers/image: the first source (mirrors, then the registry) that serves
        the manifest serves the whole image."""
        for client in self.clients:
            if not client.source.mirror:
                self.client = client
                try:
                    return client.get_manifest(self.ref.reference)
                except BootcPyError as exc:
                    if self.ref.short_name:
                        exc.hint = "; ".join(filter(None, [self.ref.short_name_hint, exc.hint]))
                    raise
            try:
                found = client.get_manifest(self.ref.reference)
            except BootcPyError as exc:
                log.info("    mirror %s: %s; trying the next source", client.host, exc.message)
                continue
            log.info("    pulling %s through the mirror %s", self.ref, client.host)
            self.client = client
            return found
        raise AssertionError("pull_sources() always ends with the registry itself")

    def root(self) -> tuple[bytes, str | None, str | None]:
        body, media_type, header_digest = self._manifest_from_a_source()
        if self.ref.digest is None and header_digest and dg.is_digest(header_digest):
            return body, media_type, header_digest
        return body, media_type, self.ref.digest

    def manifest(self, digest: str) -> bytes:
        return self.client.get_manifest(digest)[0]

    def blob(self, digest: str, writer: BlobWriter, progress: blog.ByteProgress | None,
             cancel: threading.Event) -> None:
        self.client.fetch_blob(digest, writer, progress, cancel)


class _LayoutFetcher:
    def __init__(self, layout: Layout, tag: str | None, own_digest: str | None = None) -> None:
        self.layout = layout
        self.tag = tag
        self.own_digest = own_digest

    def root(self) -> tuple[bytes, str | None, str | None]:
        desc = self.layout.select(self.tag)
        digest = desc.get("digest")
        if not isinstance(digest, str) or not dg.is_digest(digest):
            raise ImageError(f"malformed {self.layout.label}/index.json: invalid digest "
                             f"{digest!r}")
        return self.layout.read_blob(digest), str(desc.get("mediaType") or ""), digest

    def manifest(self, digest: str) -> bytes:
        return self.layout.read_blob(digest)

    def blob(self, digest: str, writer: BlobWriter, progress: blog.ByteProgress | None,
             cancel: threading.Event) -> None:
        with self.layout.open_blob(digest) as f:
            if writer.offset:
                writer.restart()  # local copies are cheap; no resume
            while chunk := f.read(_COPY_CHUNK):
                if cancel.is_set():
                    raise ImageError("cancelled")
                writer.write(chunk)
                if progress is not None:
                    progress.update(len(chunk))


@contextlib.contextmanager
def _open_fetcher(ref: ImageRef, opts: PullOptions, cache: BlobCache) -> Iterator[_Fetcher]:
    t = ref.transport
    if t is Transport.REGISTRY:
        yield _RegistryFetcher(ref, opts)
    elif t is Transport.OCI:
        yield _LayoutFetcher(OciDir(Path(ref.name)), ref.tag)
    elif t is Transport.OCI_ARCHIVE:
        archive = OciArchive(Path(ref.name))
        try:
            yield _LayoutFetcher(archive, ref.tag)
        finally:
            archive.close()
    else:
        # containers-storage: and docker-archive: through skopeo, into a layout next to the cache.
        tmp = Path(tempfile.mkdtemp(prefix="skopeo-", dir=cache.root / "tmp"))
        try:
            platform: list[str] = []
            own = None
            if t is Transport.CONTAINERS_STORAGE:
                platform = ["--override-arch", _norm_arch(opts.arch), "--override-os", opts.os]
            try:
                if t is Transport.CONTAINERS_STORAGE:
                    own = _stored_digest(ref, platform)
                run(["skopeo", *platform, "copy", "--quiet", str(ref), f"oci:{tmp}:image"],
                    quiet=True)
            except CommandError as exc:
                raise skopeo_error(str(ref), exc.stderr) from None
            yield _LayoutFetcher(OciDir(tmp), "image", own)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _stored_digest(ref: ImageRef, platform: list[str]) -> str:
    """The digest of the manifest containers-storage holds for `ref` (for an image podman
    pulled from an index, the platform entry's), which skopeo's copy out of it does not keep."""
    # The exact bytes (JSON is UTF-8; no stripping: a trailing newline is part of the digest).
    body = run(["skopeo", *platform, "inspect", "--raw", str(ref)], capture=True).stdout.encode()
    return dg.of_bytes(body, "sha256")


def skopeo_error(ref: str, stderr: str) -> ImageError:
    """skopeo's `level=fatal msg="..."` as one line a user can act on."""
    found = re.findall(r'level=fatal msg="((?:[^"\\]|\\.)*)"', stderr)
    msg = found[-1].replace('\\"', '"') if found else (stderr.strip().splitlines() or [""])[-1]
    if "does not resolve to an image ID" in msg or "identifier is not an image" in msg:
        return NotFoundError(f"{ref}: no such image in the container storage",
                             "list the images there with 'podman images'")
    if "no such file or directory" in msg:
        return NotFoundError(f"{ref}: the file does not exist")
    if "invalid tar header" in msg or "manifest.json" in msg:
        return ImageError(f"{ref}: not a docker-archive tar (as written by 'docker save' or "
                          "'podman save')")
    if "permission denied" in msg:
        return ImageError(f"{ref}: permission denied", "run as root")
    return ImageError(f"skopeo could not read {ref}: {msg.removeprefix('initializing source ')}")


# The pull itself.

def _small_blob(cache: BlobCache, fetcher: _Fetcher, desc: Descriptor, what: str) -> bytes:
    """A config blob: from the cache if it is there and intact, else fetched and cached."""
    if desc.size > CONFIG_LIMIT:
        raise ImageError(f"{what} is {desc.size} bytes, more than the {CONFIG_LIMIT} allowed")
    if cache.has(desc.digest):
        with contextlib.suppress(DigestMismatchError):
            return cache.read(desc.digest, CONFIG_LIMIT)
    with cache.writer(desc.digest, desc.size, what) as w:
        if w is not None:
            fetcher.blob(desc.digest, w, None, threading.Event())
            w.commit()
    return cache.read(desc.digest, CONFIG_LIMIT)


def _fetch_layers(cache: BlobCache, fetcher: _Fetcher, layers: tuple[Layer, ...],
                  opts: PullOptions, label: str) -> int:
    """Make sure every layer blob is in the cache, intact. Returns the bytes downloaded."""
    jobs = max(1, min(opts.jobs, len(layers) or 1))
    unique = list({layer.digest: layer for layer in layers}.values())
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="pull") as pool:
        # Re-hash what the cache already has: a corrupt blob is deleted and fetched again.
        intact = dict(zip([x.digest for x in unique], pool.map(
            lambda x: cache.has(x.digest) and cache.verify(x.digest, x.size), unique),
            strict=True))
        missing = [x for x in unique if not intact[x.digest]]
        if not missing:
            log.info("all %d layers of %s are in the cache", len(unique), label)
            return 0
        total = sum(x.size for x in missing)
        cancel = threading.Event()

        def one(layer: Layer, bar: blog.ByteProgress) -> None:
            with cache.writer(layer.digest, layer.size, "layer") as w:
                if w is None:
                    return  # another process fetched it meanwhile
                resumed = w.offset > 0
                try:
                    fetcher.blob(layer.digest, w, bar, cancel)
                    w.commit()
                except DigestMismatchError:
                    if not resumed:
                        raise
                    # The partial we resumed from may have been the bad part: once more, whole.
                    log.info("layer %s: resumed download did not verify; fetching it whole",
                             dg.short(layer.digest))
                    w2 = BlobWriter(cache, layer.digest, layer.size, "layer")
                    try:
                        fetcher.blob(layer.digest, w2, bar, cancel)
                        w2.commit()
                    finally:
                        w2.close()

        with blog.progress_bytes("pull", f"Pulling {label}", total) as bar:
            futures = [pool.submit(one, x, bar) for x in missing]
            try:
                done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            except BaseException:  # Ctrl-C: stop the downloads now, keep partials to resume
                cancel.set()
                for f in futures:
                    f.cancel()
                raise
            failed = [f for f in done if f.exception() is not None]
            if failed:
                cancel.set()
                for f in futures:
                    f.cancel()
                wait(futures)
                exc = failed[0].exception()
                assert exc is not None
                if isinstance(exc, NoSpaceError):
                    # The downloads cancelled with it cannot complete either: their partials
                    # would only hold the space a retry (after freeing some) needs.
                    for x in missing:
                        cache.drop_partial(x.digest)
                raise exc
            # What this process downloaded (restarts are subtracted by the fetchers).
            return bar.done


def _fetch(ref: ImageRef, opts: PullOptions, with_layers: bool,
           skip: Callable[[Layer], bool] | None = None) -> Image:
    cache = BlobCache(opts.cache_dir)
    label = str(ref)
    cache.hold()  # the Image returned reads these blobs later; prune must wait for us
    with cache.lock(), _open_fetcher(ref, opts, cache) as fetcher:
        body, hint, expected = fetcher.root()
        digest = dg.of_bytes(body, dg.split(expected)[0] if expected else "sha256")
        if expected and digest != expected:
            raise DigestMismatchError(f"the manifest of {label} does not match its digest "
                                      f"(expected {dg.short(expected)}, got {dg.short(digest)})")
        what = f"manifest of {label}"
        doc = load_json_object(body, what)
        media_type = _media_type(doc, hint, what)
        index_digest = None
        for _ in range(4):  # an index may (rarely) point at another index
            if media_type not in mt.INDEXES:
                break
            cache.put_bytes(digest, body)
            index_digest = index_digest or digest
            desc = select_platform(doc, opts, f"index of {label}")
            body = fetcher.manifest(desc.digest)
            digest = dg.of_bytes(body, dg.split(desc.digest)[0])
            if digest != desc.digest:
                raise DigestMismatchError(f"a manifest of {label} does not match its digest "
                                          f"(expected {dg.short(desc.digest)}, got "
                                          f"{dg.short(digest)})")
            doc = load_json_object(body, what)
            media_type = _media_type(doc, desc.media_type, what)
        if media_type in (mt.DOCKER_MANIFEST_V1, mt.DOCKER_MANIFEST_V1_SIGNED):
            raise UnsupportedError(f"{label} uses a Docker schema 1 manifest, which is not "
                                   "supported", hint="push the image again with a current tool")
        if media_type not in mt.MANIFESTS:
            raise UnsupportedError(f"{what} has unsupported media type '{media_type}'")
        config_desc, layer_descs = _manifest_descriptors(doc, what)
        cache.put_bytes(digest, body)
        config = load_json_object(_small_blob(cache, fetcher, config_desc, f"config of {label}"),
                       f"config of {label}")
        diff_ids = _diff_ids(config, len(layer_descs), f"config of {label}")
        layers = tuple(Layer(d.digest, diff_id, d.size, d.media_type)
                       for d, diff_id in zip(layer_descs, diff_ids, strict=True))
        fetched = 0
        if with_layers:
            wanted = tuple(x for x in layers if skip is None or not skip(x))
            fetched = _fetch_layers(cache, fetcher, wanted, opts, label)
            blobs = [b for b in (index_digest, digest, config_desc.digest) if b]
            cache.record(ImageRecord(str(ref), digest, config_desc.digest,
                                     tuple(blobs + [x.digest for x in layers]),
                                     sum(x.size for x in layers), time.time()))
        return Image(ref, fetcher.own_digest or digest, doc, config_desc.digest, config, layers,
                     cache.root, index_digest, fetched)


def pull(ref: ImageRef, opts: PullOptions, *,
         skip: Callable[[Layer], bool] | None = None) -> Image:
    """Fetch the image into the cache (verified) and describe it. A second pull of an unchanged
    image downloads no blob bytes. Layers for which `skip` is true are not fetched (an updater
    whose ostree repository already holds them as commits)."""
    with blog.step("pull", f"Pulling {ref}"):
        image = _fetch(ref, opts, with_layers=True, skip=skip)
    log.info("pulled %s (%s): %d layers, %s, %s fetched", ref, dg.short(image.manifest_digest),
             len(image.layers), human_size(image.size), human_size(image.fetched))
    return image


def resolve(ref: ImageRef, opts: PullOptions) -> Image:
    """Fetch just the manifest and config (cached); the layers stay where they are."""
    return _fetch(ref, opts, with_layers=False)


def cached_image(ref: ImageRef, cache_dir: Path) -> Image | None:
    """The image last pulled under `ref`, from the cache alone (no network), or None."""
    cache = BlobCache(cache_dir)
    rec = cache.lookup(str(ref))
    if rec is not None:
        cache.hold()
    if rec is None or not all(cache.has(b) for b in rec.blobs):
        return None
    what = f"cached manifest of {ref}"
    try:
        doc = load_json_object(cache.read(rec.manifest_digest), what)
        config_desc, layer_descs = _manifest_descriptors(doc, what)
        config = load_json_object(cache.read(config_desc.digest, CONFIG_LIMIT),
                                  f"cached config of {ref}")
    except DigestMismatchError:
        return None
    diff_ids = _diff_ids(config, len(layer_descs), f"cached config of {ref}")
    layers = tuple(Layer(d.digest, i, d.size, d.media_type)
                   for d, i in zip(layer_descs, diff_ids, strict=True))
    index = rec.blobs[0] if rec.blobs[0] != rec.manifest_digest else None
    return Image(ref, rec.manifest_digest, doc, config_desc.digest, config, layers, cache.root,
                 index)


def human_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"
