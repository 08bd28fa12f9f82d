"""Image references, spelled the way bootc and skopeo spell them.

    registry:HOST/NAME[:TAG|@DIGEST]     bootc's spelling (the default when no transport is given)
    docker://HOST/NAME[:TAG|@DIGEST]     skopeo's spelling of the same thing
    oci:DIR[:TAG]                        an OCI image layout directory
    oci-archive:FILE[:TAG]               a tar of an OCI image layout
    containers-storage:[STORE]NAME       podman/buildah local storage (read through skopeo)
    docker-archive:FILE[:REF]            `docker save` output (read through skopeo)

Registry names are normalized like docker and skopeo do: `fedora` is
`docker.io/library/fedora:latest`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from enum import StrEnum

from bootc_py.errors import ImageRefError
from bootc_py.image import digest as dg

ACCEPTED_FORMS = (
    "registry:HOST/NAME[:TAG|@sha256:...], docker://HOST/NAME[:TAG|@sha256:...], "
    "oci:DIR[:TAG], oci-archive:FILE[:TAG], containers-storage:NAME, docker-archive:FILE[:REF]"
)

DEFAULT_REGISTRY = "docker.io"
DEFAULT_TAG = "latest"

# The distribution reference grammar (github.com/distribution/reference), split in parts.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_DOMAIN_RE = re.compile(
    r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?$"
)
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
_OCI_TAG_RE = re.compile(r"^[A-Za-z0-9._:@/+-]+$")


class Transport(StrEnum):
    REGISTRY = "registry"
    OCI = "oci"
    OCI_ARCHIVE = "oci-archive"
    CONTAINERS_STORAGE = "containers-storage"
    DOCKER_ARCHIVE = "docker-archive"


@dataclass(frozen=True)
class ImageRef:
    """A parsed image reference.

    `name` is "HOST/REPOSITORY" for the registry transport, the absolute path for oci:,
    oci-archive: and docker-archive:, and the storage spec for containers-storage:.
    `tag` is the tag (or, for the path transports, the reference inside the layout/archive);
    `digest` pins a registry manifest.
    """

    transport: Transport
    name: str
    tag: str | None = None
    digest: str | None = None
    # Written with neither a transport nor a registry host ('fedora', 'nosuch:thing'): read
    # as a Docker Hub name, which a failed pull should say (it may have been a typo).
    short_name: bool = field(default=False, compare=False, repr=False)

    @property
    def registry(self) -> str:
        """The registry host[:port] (registry transport only)."""
        return self.name.split("/", 1)[0] if self.transport is Transport.REGISTRY else ""

    @property
    def repository(self) -> str:
        """The repository path inside the registry (registry transport only)."""
        if self.transport is not Transport.REGISTRY:
            return ""
        return self.name.split("/", 1)[1]

    @property
    def reference(self) -> str:
        """What to ask the registry for: the digest if pinned, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    def with_digest(self, digest: str) -> ImageRef:
        """The same image pinned to a manifest digest (registry transport)."""
        return ImageRef(self.transport, self.name, None, digest, self.short_name)

    @property
    def short_name_hint(self) -> str:
        """Why a registry error names Docker Hub, for a reference written without a host."""
        known = ", ".join(f"{t.value}:" for t in Transport)
        return (f"the reference names neither a transport nor a registry host, so it was read "
                f"as the Docker Hub image {self}; other transports: docker://, {known}")

    def __str__(self) -> str:
        t = self.transport
        if t is Transport.REGISTRY:
            s = f"docker://{self.name}"
            if self.tag:
                s += f":{self.tag}"
            if self.digest:
                s += f"@{self.digest}"
            return s
        if t is Transport.CONTAINERS_STORAGE:
            return f"containers-storage:{self.name}"
        return f"{t.value}:{self.name}" + (f":{self.tag}" if self.tag else "")

    @property
    def bootc_spelling(self) -> str:
        """The spelling bootc writes into origin files: `registry:HOST/NAME:TAG` etc."""
        if self.transport is Transport.REGISTRY:
            return "registry:" + str(self).removeprefix("docker://")
        return str(self)


def _fail(text: str, why: str) -> ImageRefError:
    return ImageRefError(f"invalid image reference '{text}': {why}",
                         hint=f"accepted forms: {ACCEPTED_FORMS}")


def _parse_registry(text: str, body: str) -> ImageRef:
    if not body:
        raise _fail(text, "no image name")
    digest = None
    if "@" in body:
        body, digest = body.split("@", 1)
        if not dg.is_digest(digest):
            raise _fail(text, f"'{digest}' is not a digest (expected sha256:<64 hex digits>)")
    tag = None
    last = body.rsplit("/", 1)[-1]
    if ":" in last:
        body, tag = body.rsplit(":", 1)
        if not _TAG_RE.match(tag):
            raise _fail(text, f"'{tag}' is not a valid tag")
    first, sep, rest = body.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"
                or first != first.lower()):
        domain, path = first, rest
        if not _DOMAIN_RE.match(domain):
            raise _fail(text, f"'{domain}' is not a valid registry host")
    else:
        domain, path = DEFAULT_REGISTRY, body
    if domain in ("index.docker.io", "registry-1.docker.io"):
        domain = DEFAULT_REGISTRY
    if domain == DEFAULT_REGISTRY and "/" not in path:
        path = f"library/{path}"
    if not _PATH_RE.match(path):
        raise _fail(text, f"'{path}' is not a valid repository name (lowercase letters, "
                          "digits and . _ - separators)")
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return ImageRef(Transport.REGISTRY, f"{domain}/{path}", tag, digest)


def _parse_path(text: str, transport: Transport, body: str, tag_re: re.Pattern[str]) -> ImageRef:
    # Like containers/image, the path ends at the first colon: paths cannot contain one.
    path, sep, tag = body.partition(":")
    if not path:
        raise _fail(text, "no path")
    if sep and not tag:
        raise _fail(text, "empty tag after ':'")
    if tag and not tag_re.match(tag):
        raise _fail(text, f"'{tag}' is not a valid reference")
    return ImageRef(transport, os.path.abspath(path), tag or None)


# Transports skopeo knows that bootc-py does not read: named in the error instead of being
# misread as a registry host.
_OTHER_TRANSPORTS = frozenset({"dir", "docker-daemon", "ostree", "sif", "tarball"})
# ostree-rs-ext's spellings, which bootc writes into origin files.
_OSTREE_PREFIXES = ("ostree-unverified-registry:", "ostree-unverified-image:",
                    "ostree-remote-registry:", "ostree-remote-image:", "ostree-image-signed:")


def parse_imgref(text: str) -> ImageRef:
    """Parse an image reference in any of the accepted forms (see the module docstring)."""
    text = text.strip()
    if not text:
        raise _fail(text, "empty")
    if any(c.isspace() for c in text):
        raise _fail(text, "contains whitespace")
    for prefix in _OSTREE_PREFIXES:
        if text.startswith(prefix):
            body = text[len(prefix):]
            if prefix == "ostree-unverified-registry:":
                return _parse_registry(text, body)
            if prefix.startswith("ostree-remote-"):
                body = body.partition(":")[2]  # drop the remote name
                if prefix == "ostree-remote-registry:":
                    return _parse_registry(text, body)
            return parse_imgref(body)
    if text.startswith("docker://"):
        return _parse_registry(text, text[len("docker://"):])
    if "://" in text:
        raise _fail(text, f"unknown transport '{text.split('://', 1)[0]}://'")
    transport, sep, body = text.partition(":")
    if sep and transport in {t.value for t in Transport}:
        t = Transport(transport)
        if t is Transport.REGISTRY:
            return _parse_registry(text, body)
        if t in (Transport.OCI, Transport.OCI_ARCHIVE):
            return _parse_path(text, t, body, _OCI_TAG_RE)
        if t is Transport.DOCKER_ARCHIVE:
            return _parse_path(text, t, body, _OCI_TAG_RE)
        if not body:
            raise _fail(text, "no image name")
        return ImageRef(Transport.CONTAINERS_STORAGE, body)
    if sep and transport in _OTHER_TRANSPORTS:
        raise _fail(text, f"transport '{transport}:' is not supported")
    if sep and _looks_like_transport(transport, body):
        known = ", ".join(f"{t.value}:" for t in Transport)
        raise ImageRefError(f"invalid image reference '{text}': unknown transport "
                            f"'{transport}:' (transports: docker://, {known})",
                            hint="a registry image without a transport is NAME[:TAG]")
    ref = _parse_registry(text, text)
    return replace(ref, short_name=True) if ref.registry == DEFAULT_REGISTRY and \
        not text.startswith(DEFAULT_REGISTRY + "/") else ref


def _looks_like_transport(prefix: str, body: str) -> bool:
    """'nosuch:/dir' or 'oci-achive:x.tar' is a mistyped transport, not NAME:TAG: a tag has
    no '/', and a near miss of a transport's name is a typo."""
    import difflib

    if not prefix.replace("-", "").isalnum() or body.split("/", 1)[0].isdigit():
        return False  # a registry host (with a port, maybe IPv6) or a path
    names = [t.value for t in Transport] + sorted(_OTHER_TRANSPORTS)
    return "/" in body or bool(difflib.get_close_matches(prefix, names, n=1, cutoff=0.75))
