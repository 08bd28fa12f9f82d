"""A client for the OCI distribution API (Docker Registry HTTP API v2), built on requests.

What it does, like containers/image: TLS verified by default (plain http only for
--tls-verify=false or an `insecure` registry, after https failed); anonymous, basic and bearer
token auth from the WWW-Authenticate challenge; retries with exponential backoff on connection
errors, 429 and 5xx (honouring Retry-After); blob downloads that resume with a Range request when
the connection drops. It never logs a credential or a token.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import logging
import random
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import urllib3

from bootc_py.errors import AuthError, NotFoundError, RegistryError, UnsupportedError
from bootc_py.image import digest as dg
from bootc_py.image import mediatypes as mt
from bootc_py.image.auth import Challenge, Credentials, find_credentials, parse_challenge
from bootc_py.image.cache import BlobWriter
from bootc_py.image.ref import ImageRef
from bootc_py.image.registries_conf import PullSource, RegistriesConf
from bootc_py.image.registries_conf import load as load_registries_conf
from bootc_py.log import ByteProgress

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
MANIFEST_LIMIT = 4 << 20  # containers/image refuses bigger manifests too
# Read size for blobs. A dropped connection loses the chunk being read, so this bounds what a
# resume has to fetch again; per-chunk overhead is negligible at this size.
CHUNK = 128 << 10
CERTS_D = Path("/etc/containers/certs.d")
USER_AGENT = "bootc-py"

# What a dropped connection looks like, depending on where in requests/urllib3 it surfaces.
_NET_ERRORS: tuple[type[BaseException], ...] = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    urllib3.exceptions.HTTPError,
    ConnectionError,
    TimeoutError,
)


@dataclass(frozen=True)
class ClientOptions:
    tls_verify: bool | None = None  # None: verify unless registries.conf marks it insecure
    authfile: Path | None = None
    retries: int = 4  # extra attempts after the first
    backoff: float = 0.25  # first delay; doubles per attempt (with jitter)
    connect_timeout: float = 15.0
    read_timeout: float = 60.0  # silence on an open connection before we call it dropped


def _reason(exc: BaseException) -> str:
    """The useful tail of a requests exception ("Connection refused", not a page of repr)."""
    text = str(exc)
    m = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text)
    if m:
        return m.group(1).strip()
    for pat in (r"(Connection aborted)", r"(Connection broken: [A-Za-z]+)",
                r"(Read timed out)", r"(certificate verify failed[^'\")]*)",
                r"(wrong version number)", r"(Remote end closed connection without response)"):
        m = re.search(pat, text)
        if m:
            return m.group(1)
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _is_loopback(host: str) -> bool:
    h = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    h = h.strip("[]")
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def _registry_errors(resp: requests.Response) -> str:
    """The registry's own error codes and messages, if it sent the standard JSON body."""
    try:
        body = resp.json()
    except ValueError:
        return ""
    errs = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errs, list):
        return ""
    parts = []
    for e in errs[:3]:
        if isinstance(e, dict):
            code = str(e.get("code", "")).strip()
            msg = str(e.get("message", "")).strip()
            parts.append(": ".join(p for p in (code, msg) if p))
    return "; ".join(p for p in parts if p)


def pull_sources(ref: ImageRef, conf: RegistriesConf | None = None) -> tuple[PullSource, ...]:
    """Where registries.conf says to pull `ref` from: its mirrors in order, then the registry.
    A blocked registry is an error."""
    conf = conf if conf is not None else load_registries_conf()
    entry = conf.lookup(ref.name)
    if entry is not None and entry.blocked:
        raise RegistryError(f"registry {ref.registry} is blocked in registries.conf")
    return conf.pull_sources(ref.name, by_digest=ref.digest is not None)


class RegistryClient:
    """One repository on one registry. Thread-safe: each thread gets its own Session."""

    def __init__(self, ref: ImageRef, opts: ClientOptions,
                 conf: RegistriesConf | None = None, source: PullSource | None = None) -> None:
        """A client for `ref` at `source` (one of `pull_sources()`; default: the registry's
        own location, after registries.conf relocation)."""
        if source is None:
            source = pull_sources(ref, conf)[-1]
        name = source.name
        self.ref = ref
        self.source = source
        self.host, self.repo = name.split("/", 1)
        self.api_host = "registry-1.docker.io" if self.host == "docker.io" else self.host
        self.opts = opts
        self.insecure = opts.tls_verify is False or (opts.tls_verify is None and source.insecure)
        self._verify: bool | str = not self.insecure
        self._cert: tuple[str, str] | None = None
        self._load_certs_d()
        # Credentials for where we actually connect (a relocated registry has its own).
        self._creds: Credentials | None = find_credentials(name, opts.authfile)
        self._base: str | None = None
        self._challenge: Challenge | None = None
        self._auth: str | None = None  # the Authorization header value in use
        self._lock = threading.Lock()
        self._local = threading.local()

    def _load_certs_d(self) -> None:
        """Per-registry CA and client certificates, as containers-certs.d(5) places them."""
        d = CERTS_D / self.host
        if not d.is_dir() or not self._verify:
            return
        cas = sorted(d.glob("*.crt"))
        if cas:
            self._verify = str(cas[0])
        certs = sorted(d.glob("*.cert"))
        if certs and certs[0].with_suffix(".key").is_file():
            self._cert = (str(certs[0]), str(certs[0].with_suffix(".key")))

    # Plumbing.

    def _session(self) -> requests.Session:
        s: requests.Session | None = getattr(self._local, "session", None)
        if s is None:
            s = requests.Session()
            s.headers["User-Agent"] = USER_AGENT
            # Like Go's net/http, never send loopback traffic through an environment proxy.
            if _is_loopback(self.api_host):
                s.trust_env = False
            self._local.session = s
        return s

    def _sleep(self, attempt: int, retry_after: str | None = None) -> None:
        delay = self.opts.backoff * (2 ** attempt) * (0.75 + random.random() / 2)
        if retry_after and retry_after.strip().isdigit():
            delay = max(delay, min(float(retry_after), 60.0))
        time.sleep(delay)

    def _ping(self) -> None:
        """Find the API base URL (https, or http for an insecure registry) and its challenge."""
        schemes = ["https", "http"] if self.insecure else ["https"]
        errors: dict[str, str] = {}
        for attempt in range(self.opts.retries + 1):
            for scheme in schemes:
                url = f"{scheme}://{self.api_host}/v2/"
                try:
                    resp = self._session().get(
                        url, timeout=(self.opts.connect_timeout, self.opts.read_timeout),
                        verify=self._verify, cert=self._cert)
                except requests.exceptions.SSLError as exc:
                    errors[scheme] = f"TLS handshake failed ({_reason(exc)})"
                    if not self.insecure:
                        break  # a certificate or protocol problem does not fix itself
                    continue
                except _NET_ERRORS as exc:
                    errors[scheme] = _reason(exc)
                    continue
                with contextlib.closing(resp):
                    if resp.status_code in (200, 401):
                        self._base = f"{scheme}://{self.api_host}"
                        if resp.status_code == 401:
                            self._challenge = parse_challenge(
                                resp.headers.get("WWW-Authenticate", ""))
                        log.debug("registry %s: API at %s", self.host, self._base)
                        return
                    if resp.status_code in RETRY_STATUS:
                        errors[scheme] = f"HTTP {resp.status_code}"
                        continue
                    raise RegistryError(
                        f"{self.host} does not look like a container registry "
                        f"(GET {url} answered {resp.status_code})")
            if not self.insecure and "TLS" in errors.get("https", ""):
                break
            if attempt < self.opts.retries:
                log.debug("registry %s unreachable (%s); retrying", self.host, errors)
                self._sleep(attempt)
        detail = "; ".join(f"{k}: {v}" for k, v in errors.items())
        hint = None
        if "https" in errors and "TLS" in errors["https"] and not self.insecure:
            hint = ("if the registry speaks plain http or has a self-signed certificate, pass "
                    "--tls-verify=false or mark it insecure in registries.conf")
        raise RegistryError(f"cannot reach registry {self.host} ({detail})", hint=hint)

    def _authenticate(self, challenge: Challenge | None, rejected: str | None) -> None:
        """Set self._auth from a challenge. `rejected` is the header value the server refused."""
        with self._lock:
            if self._auth != rejected:
                return  # another thread already refreshed it
            # Basic credentials are either right or wrong; a bearer token may just have
            # expired, so a rejected one is fetched again (the caller bounds how often).
            if rejected is not None and (rejected.startswith("Basic") or challenge is None):
                raise self._auth_error()
            if challenge is None:
                raise AuthError(f"registry {self.host} refused access without saying how to "
                                "authenticate")
            if challenge.scheme == "basic":
                if self._creds is None:
                    raise self._auth_error()
                raw = f"{self._creds.username}:{self._creds.password}".encode()
                self._auth = "Basic " + base64.b64encode(raw).decode()
            elif challenge.scheme == "bearer":
                self._auth = "Bearer " + self._fetch_token(challenge)
            else:
                raise UnsupportedError(
                    f"registry {self.host} asks for '{challenge.scheme}' authentication, "
                    "which bootc-py does not support (basic and bearer are)")

    def _auth_error(self) -> AuthError:
        if self._creds is None:
            return AuthError(f"registry {self.host} requires authentication for {self.repo}",
                             hint="log in with `podman login` or pass --authfile")
        return AuthError(f"registry {self.host} rejected the credentials for {self._creds}",
                         hint="check the user name and password in the auth file")

    def _fetch_token(self, ch: Challenge) -> str:
        realm = ch.params.get("realm")
        if not realm:
            raise AuthError(f"registry {self.host} sent a bearer challenge without a realm")
        params = {"scope": f"repository:{self.repo}:pull"}
        if ch.params.get("service"):
            params["service"] = ch.params["service"]
        auth = None
        if self._creds is not None:
            params["account"] = self._creds.username
            auth = (self._creds.username, self._creds.password)
        for attempt in range(self.opts.retries + 1):
            try:
                resp = self._session().get(
                    realm, params=params, auth=auth, verify=self._verify, cert=self._cert,
                    timeout=(self.opts.connect_timeout, self.opts.read_timeout))
            except _NET_ERRORS as exc:
                if attempt >= self.opts.retries:
                    raise RegistryError(f"cannot reach the token service of {self.host} "
                                        f"({_reason(exc)})") from exc
                self._sleep(attempt)
                continue
            with contextlib.closing(resp):
                if resp.status_code in RETRY_STATUS and attempt < self.opts.retries:
                    self._sleep(attempt, resp.headers.get("Retry-After"))
                    continue
                if resp.status_code in (401, 403):
                    raise self._auth_error()
                if resp.status_code != 200:
                    raise RegistryError(f"the token service of {self.host} answered "
                                        f"{resp.status_code}")
                try:
                    body = resp.json()
                    token = body.get("token") or body.get("access_token")
                except (ValueError, AttributeError):
                    token = None
                if not isinstance(token, str) or not token:
                    raise RegistryError(f"the token service of {self.host} sent no token")
                log.debug("registry %s: got a bearer token for %s", self.host, params["scope"])
                return token
        raise RegistryError(f"the token service of {self.host} kept failing")

    def _request(self, path: str, *, headers: Mapping[str, str] | None = None,
                 method: str = "GET") -> requests.Response:
        """A streamed request with auth and retries. Returns any final response; the caller
        checks the status (and must close it)."""
        if self._base is None:
            with self._lock:
                if self._base is None:
                    self._ping()
            if self._challenge is not None and self._auth is None:
                self._authenticate(self._challenge, None)
        url = f"{self._base}{path}"
        attempt = 0
        auth_tries = 0
        while True:
            h = dict(headers or {})
            sent_auth = self._auth
            if sent_auth:
                h["Authorization"] = sent_auth
            try:
                resp = self._session().request(
                    method, url, headers=h, stream=True, verify=self._verify, cert=self._cert,
                    timeout=(self.opts.connect_timeout, self.opts.read_timeout))
            except requests.exceptions.SSLError as exc:
                raise RegistryError(f"TLS error talking to {self.host}: {_reason(exc)}") from exc
            except _NET_ERRORS as exc:
                if attempt >= self.opts.retries:
                    raise RegistryError(f"cannot reach registry {self.host} ({_reason(exc)}) "
                                        f"after {attempt + 1} attempts") from exc
                log.debug("%s %s: %s; retrying", method, path, _reason(exc))
                self._sleep(attempt)
                attempt += 1
                continue
            if resp.status_code == 401 and auth_tries < 2:
                ch = parse_challenge(resp.headers.get("WWW-Authenticate", ""))
                resp.close()
                auth_tries += 1
                self._authenticate(ch, sent_auth)
                continue
            if resp.status_code in RETRY_STATUS and attempt < self.opts.retries:
                log.debug("%s %s: HTTP %d; retrying", method, path, resp.status_code)
                retry_after = resp.headers.get("Retry-After")
                resp.close()
                self._sleep(attempt, retry_after)
                attempt += 1
                continue
            return resp

    def _fail(self, resp: requests.Response, what: str) -> Exception:
        detail = _registry_errors(resp)
        code = resp.status_code
        suffix = f" ({detail})" if detail else ""
        if code == 404:
            return NotFoundError(f"{what} not found{suffix}")
        if code == 401:
            return self._auth_error()
        if code == 403:
            return AuthError(f"registry {self.host} denied access to {what}{suffix}")
        if code == 429:
            return RegistryError(f"registry {self.host} keeps rate-limiting us (HTTP 429)")
        return RegistryError(f"registry {self.host} answered HTTP {code} for {what}{suffix}")

    # The API.

    def get_manifest(self, reference: str) -> tuple[bytes, str, str | None]:
        """(body, media type, Docker-Content-Digest header) of a manifest or index."""
        what = f"manifest {self.repo}:{reference}" if not dg.is_digest(reference) \
            else f"manifest {self.repo}@{dg.short(reference)}"
        resp = self._request(f"/v2/{self.repo}/manifests/{reference}",
                             headers={"Accept": mt.MANIFEST_ACCEPT})
        with contextlib.closing(resp):
            if resp.status_code != 200:
                raise self._fail(resp, f"image {self.host}/{self.repo}:{reference}"
                                 if not dg.is_digest(reference)
                                 else f"image {self.host}/{self.repo}@{reference}")
            body = b""
            try:
                for chunk in resp.iter_content(64 << 10):
                    body += chunk
                    if len(body) > MANIFEST_LIMIT:
                        raise RegistryError(f"{what} is larger than {MANIFEST_LIMIT} bytes")
            except _NET_ERRORS as exc:
                raise RegistryError(f"connection to {self.host} lost while reading {what} "
                                    f"({_reason(exc)})") from exc
            media_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
            return body, media_type, resp.headers.get("Docker-Content-Digest")

    def fetch_blob(self, digest: str, writer: BlobWriter,
                   progress: ByteProgress | None = None,
                   cancel: threading.Event | None = None) -> None:
        """Stream a blob into `writer`, resuming with Range after a dropped connection.

        The caller commits the writer (which verifies the digest)."""
        what = f"blob {dg.short(digest)}"
        drops = 0
        while True:
            headers = {"Accept-Encoding": "identity"}
            start = writer.offset
            if start:
                headers["Range"] = f"bytes={start}-"
            resp = self._request(f"/v2/{self.repo}/blobs/{digest}", headers=headers)
            with contextlib.closing(resp):
                if resp.status_code == 416 and start:
                    log.debug("%s: range %d- not satisfiable; fetching it whole", what, start)
                    self._restart(writer, progress)
                    continue
                if resp.status_code not in (200, 206):
                    raise self._fail(resp, f"{what} of {self.host}/{self.repo}")
                if start and (resp.status_code == 200 or not resp.headers.get(
                        "Content-Range", "").startswith(f"bytes {start}-")):
                    log.debug("%s: server ignored the Range request; fetching it whole", what)
                    self._restart(writer, progress)
                elif start:
                    log.info("resuming %s at byte %d", what, start)
                try:
                    for chunk in resp.iter_content(CHUNK):
                        if cancel is not None and cancel.is_set():
                            raise RegistryError(f"download of {what} cancelled")
                        writer.write(chunk)
                        if progress is not None:
                            progress.update(len(chunk))
                except _NET_ERRORS as exc:
                    reason = _reason(exc)
                else:
                    if writer.size is None or writer.offset >= writer.size:
                        return
                    reason = f"connection closed at byte {writer.offset} of {writer.size}"
            drops += 1
            if drops > self.opts.retries:
                raise RegistryError(f"downloading {what} from {self.host} failed after "
                                    f"{drops} attempts ({reason})")
            log.info("%s: %s; resuming at byte %d", what, reason, writer.offset)
            self._sleep(drops - 1)

    @staticmethod
    def _restart(writer: BlobWriter, progress: ByteProgress | None) -> None:
        if progress is not None and writer.offset:
            progress.update(-writer.offset)
        writer.restart()

    def tags(self) -> list[str]:
        """The repository's tags (first page of up to 1000)."""
        resp = self._request(f"/v2/{self.repo}/tags/list?n=1000")
        with contextlib.closing(resp):
            if resp.status_code != 200:
                raise self._fail(resp, f"repository {self.repo}")
            body: Any = resp.json()
        return [str(t) for t in body.get("tags") or []]
