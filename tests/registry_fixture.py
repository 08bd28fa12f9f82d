"""A real Debian `docker-registry` on a free loopback port, and a connection-dropping proxy.

    with Registry(tmp_path / "reg") as reg:             # anonymous
        reg.push(layout_dir, "v1", "demo/app:1")        # through skopeo
    with Registry(tmp, users={"tester": "s3cret"}) as reg:   # htpasswd basic auth

Used by the integration tests of the image source; other suites may use it too.
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import os
import secrets
import select
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from urllib.parse import parse_qs, urlparse

import requests

from bootc_py.run import output, run, which


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Registry:
    """docker-registry serving `root/data`, stopped (and its files removed) on exit."""

    def __init__(self, root: Path, users: dict[str, str] | None = None,
                 token: TokenServer | None = None, *, proxy: str | None = None,
                 accesslog: bool = False) -> None:
        """`proxy`: a pull-through cache of that registry URL (`proxy: remoteurl:`);
        `accesslog`: log every request (with its user agent) to `log_text()`."""
        self.root = Path(root)
        self.users = users or {}
        self.token = token
        self.proxy = proxy
        self.accesslog = accesslog
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def storage(self) -> Path:
        return self.root / "data"

    def blob_file(self, digest: str) -> Path:
        """Where the registry keeps a blob's bytes (to tamper with it)."""
        hexpart = digest.split(":", 1)[1]
        return (self.storage / "docker/registry/v2/blobs/sha256" / hexpart[:2] / hexpart
                / "data")

    def start(self) -> Registry:
        exe = which("docker-registry")
        self.root.mkdir(parents=True, exist_ok=True)
        self.storage.mkdir(exist_ok=True)
        auth = ""
        if self.users:
            htpasswd = self.root / "htpasswd"
            lines = [output(["htpasswd", "-Bbn", u, p]) for u, p in self.users.items()]
            htpasswd.write_text("\n".join(lines) + "\n")
            auth = f"auth:\n  htpasswd:\n    realm: test\n    path: {htpasswd}\n"
        if self.token is not None:
            auth = ("auth:\n  token:\n"
                    f"    realm: {self.token.realm}\n    service: {TokenServer.SERVICE}\n"
                    f"    issuer: {TokenServer.ISSUER}\n"
                    f"    rootcertbundle: {self.token.cert}\n")
        for _ in range(5):  # the port can be taken between choosing and binding it
            self.port = free_port()
            cfg = self.root / "config.yml"
            cfg.write_text(
                "version: 0.1\n"
                "log:\n  level: warn\n  accesslog:\n"
                f"    disabled: {'false' if self.accesslog else 'true'}\n"
                f"storage:\n  filesystem:\n    rootdirectory: {self.storage}\n"
                "  delete:\n    enabled: true\n"
                f"http:\n  addr: {self.host}\n" + auth
                + (f"proxy:\n  remoteurl: {self.proxy}\n" if self.proxy else ""))
            logf = open(self.root / "registry.log", "ab")  # noqa: SIM115 (owned by the process)
            self._proc = subprocess.Popen([exe, "serve", str(cfg)], stdout=logf, stderr=logf,
                                          stdin=subprocess.DEVNULL)
            logf.close()
            if self._wait_ready():
                return self
            self.stop()
        raise RuntimeError(f"docker-registry did not start; see {self.root / 'registry.log'}")

    def _wait_ready(self, timeout: float = 15.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                return False
            try:
                r = requests.get(f"http://{self.host}/v2/", timeout=1)
                if r.status_code in (200, 401):
                    return True
            except requests.RequestException:
                pass
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def log_text(self) -> str:
        """What the registry logged (its access log with `accesslog=True`)."""
        path = self.root / "registry.log"
        return path.read_text(errors="replace") if path.is_file() else ""

    def __enter__(self) -> Registry:
        return self.start()

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def push(self, layout: Path, tag: str, dest: str, *, creds: str | None = None,
             all_images: bool = False) -> str:
        """skopeo copy oci:LAYOUT:TAG docker://HOST/DEST; returns the image reference."""
        ref = f"docker://{self.host}/{dest}"
        argv = ["skopeo", "copy", "--quiet", "--dest-tls-verify=false"]
        if all_images:
            argv.append("--all")
        if creds:
            argv += ["--dest-creds", creds]
        run([*argv, f"oci:{layout}:{tag}", ref], quiet=True)
        return ref


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _der_to_raw_ecdsa(der: bytes) -> bytes:
    """openssl's DER ECDSA signature (SEQUENCE of two INTEGERs) -> JWS's r || s."""
    assert der[0] == 0x30
    pos = 2 if der[1] < 0x80 else 2 + (der[1] & 0x7F)
    out = b""
    for _ in range(2):
        assert der[pos] == 0x02
        length = der[pos + 1]
        out += der[pos + 2:pos + 2 + length].lstrip(b"\0").rjust(32, b"\0")
        pos += 2 + length
    return out


class TokenServer:
    """A bearer-token service for docker-registry's `auth: token` (what Docker Hub, quay.io
    and ghcr.io use): checks basic credentials, then issues an ES256 JWT signed with openssl
    for the requested scopes. `issued` counts the tokens handed out."""

    SERVICE = "test-registry"
    ISSUER = "test-issuer"

    def __init__(self, root: Path, users: dict[str, str]) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.users = users
        self.key = self.root / "key.pem"
        self.cert = self.root / "cert.pem"
        self.issued = 0
        run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out",
             str(self.key)], quiet=True)
        run(["openssl", "req", "-new", "-x509", "-key", str(self.key), "-out", str(self.cert),
             "-days", "2", "-subj", "/CN=bootc-py test token issuer"], quiet=True)
        der = self.root / "cert.der"
        run(["openssl", "x509", "-in", str(self.cert), "-outform", "DER", "-out", str(der)],
            quiet=True)
        self._x5c = base64.b64encode(der.read_bytes()).decode()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server._handle(self)

            def log_message(self, *args: object) -> None:
                pass

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def __enter__(self) -> TokenServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def _sign(self, claims: dict[str, object]) -> str:
        header = {"typ": "JWT", "alg": "ES256", "x5c": [self._x5c]}
        signing_input = (_b64url(json.dumps(header).encode()) + "."
                         + _b64url(json.dumps(claims).encode()))
        der = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.key)],
                             input=signing_input.encode(), capture_output=True,
                             check=True).stdout
        return signing_input + "." + _b64url(_der_to_raw_ecdsa(der))

    def _handle(self, req: http.server.BaseHTTPRequestHandler) -> None:
        query = parse_qs(urlparse(req.path).query)
        user = None
        header = req.headers.get("Authorization", "")
        if header.startswith("Basic "):
            name, _, password = base64.b64decode(header[6:]).decode().partition(":")
            if self.users.get(name) == password:
                user = name
        if user is None:
            req.send_response(401)
            req.send_header("Content-Type", "application/json")
            req.end_headers()
            req.wfile.write(b'{"details": "incorrect username or password"}')
            return
        access = []
        for scope in query.get("scope", []):
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        token = self._sign({"iss": self.ISSUER, "sub": user, "aud": self.SERVICE,
                            "exp": now + 300, "nbf": now - 10, "iat": now,
                            "jti": secrets.token_hex(8), "access": access})
        self.issued += 1
        body = json.dumps({"token": token, "expires_in": 300}).encode()
        req.send_response(200)
        req.send_header("Content-Type", "application/json")
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        req.wfile.write(body)


class DroppingProxy:
    """A TCP proxy in front of a registry that cuts the first response to a blob GET after
    `cut_after` bytes (a registry that drops the connection mid-blob). Records each request
    line with its Range header, so a test can see the resume."""

    def __init__(self, upstream: str, blob: str = "", cut_after: int = 64 << 10,
                 times: int = 1, cut_ranged: bool = False,
                 busy: list[tuple[int, str]] | None = None) -> None:
        self.upstream = upstream
        self.cut_ranged = cut_ranged
        # Answer the first requests with these (status, Retry-After) instead of forwarding
        # them: an overloaded or rate-limiting registry.
        self.busy = list(busy or [])
        self.blob = blob.encode()
        self.cut_after = cut_after
        self.times = times
        self.requests: list[str] = []
        self.port = free_port()
        self._sock = socket.create_server(("127.0.0.1", self.port))
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> DroppingProxy:
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._sock.close()
        for t in self._threads:
            t.join(timeout=5)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                r, _, _ = select.select([self._sock], [], [], 0.1)
                if not r:
                    continue
                client, _ = self._sock.accept()
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(client,), daemon=True)
            t.start()
            self._threads.append(t)

    def _serve(self, client: socket.socket) -> None:
        with contextlib.suppress(OSError):  # a client hanging up is not the proxy's problem
            self._relay(client)

    def _relay(self, client: socket.socket) -> None:
        host, port = self.upstream.rsplit(":", 1)
        with contextlib.ExitStack() as stack:
            stack.enter_context(client)
            try:
                server = stack.enter_context(socket.create_connection((host, int(port))))
            except OSError:
                return
            armed_at: int | None = None
            sent = 0
            while not self._stop.is_set():
                r, _, _ = select.select([client, server], [], [], 0.1)
                if client in r:
                    data = client.recv(65536)
                    if not data:
                        return
                    head = data.split(b"\r\n\r\n", 1)[0].decode(errors="replace")
                    lines = head.split("\r\n")
                    rng = next((x for x in lines if x.lower().startswith("range:")), "")
                    self.requests.append(f"{lines[0]} {rng}".strip())
                    if self.busy and lines[0].startswith("GET /v2/") and lines[0] != \
                            "GET /v2/ HTTP/1.1":
                        status, retry_after = self.busy.pop(0)
                        client.sendall(f"HTTP/1.1 {status} Busy\r\nRetry-After: {retry_after}"
                                       "\r\nContent-Length: 0\r\n\r\n".encode())
                        continue
                    if (self.blob and self.blob in data and b"GET " in data and self.times > 0
                            and (self.cut_ranged or not rng)):
                        self.times -= 1
                        armed_at = sent
                    server.sendall(data)
                if server in r:
                    data = server.recv(65536)
                    if not data:
                        return
                    if armed_at is not None and sent + len(data) - armed_at > self.cut_after:
                        keep = max(0, armed_at + self.cut_after - sent)
                        client.sendall(data[:keep])
                        with contextlib.suppress(OSError):
                            client.shutdown(socket.SHUT_RDWR)
                        return  # drop both connections mid-body
                    client.sendall(data)
                    sent += len(data)


@contextlib.contextmanager
def env(**values: str | None) -> Iterator[None]:
    """Temporarily set (or, with None, unset) environment variables."""
    old = {k: os.environ.get(k) for k in values}
    try:
        for k, v in values.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
