"""A FleetLock server on 127.0.0.1 that follows Zincati's protocol document to the letter.

    with FleetLockServer(slots={"workers": 2}) as srv:     # other groups get `default_slots`
        client = FleetLockClient(srv.base_url, "workers", "id1")
        srv.hold("workers", "someone-else")                 # the test takes a slot itself
        srv.holders("workers") -> {"id1", "someone-else"}

Per group a counting semaphore with owned, recursive locks: `/v1/pre-reboot` from a holder
succeeds again without taking a second slot; `/v1/steady-state` from a non-holder succeeds and
changes nothing. Errors are 4xx/5xx JSON `{kind, value}` with a small set of kinds. Fault
injection: `fail_next(n, status)` answers the next n requests with a non-JSON error body.
Also usable standalone (benchmarks/fleet.py): `python fleetlock_server.py --port P --slots 5`.
"""

from __future__ import annotations

import argparse
import http.server
import json
import re
import threading
from collections.abc import Mapping
from types import TracebackType
from typing import Any

GROUP_RE = re.compile(r"^[a-zA-Z0-9.-]+$")


class FleetLockServer:
    def __init__(self, slots: Mapping[str, int] | None = None, *, default_slots: int = 1,
                 port: int = 0) -> None:
        self.slots = dict(slots or {})
        self.default_slots = default_slots
        self._holders: dict[str, set[str]] = {}
        self._lock = threading.Lock()
        self._faults: list[int] = []
        self.requests: list[tuple[str, dict[str, Any] | None]] = []  # (path, parsed body)
        self.peak: dict[str, int] = {}
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: dict[str, str] | None = None,
                       raw: bytes | None = None) -> None:
                data = raw if raw is not None else json.dumps(body or {}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._reply(405, {"kind": "method_not_allowed", "value": "only POST is served"})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                status, body, text = server._handle(self.path, self.headers.get(
                    "fleet-lock-protocol"), raw)
                self._reply(status, body, text)

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    # -- protocol ---------------------------------------------------------------------------

    def _handle(self, path: str, header: str | None, raw: bytes
                ) -> tuple[int, dict[str, str] | None, bytes | None]:
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None
        with self._lock:
            self.requests.append((path, parsed if isinstance(parsed, dict) else None))
            if self._faults:
                return self._faults.pop(0), None, b"<html>proxy error</html>"
        if path not in ("/v1/pre-reboot", "/v1/steady-state"):
            return 404, {"kind": "not_found", "value": f"no endpoint {path}"}, None
        if header != "true":
            return 400, {"kind": "missing_header",
                         "value": "the fleet-lock-protocol header must be 'true'"}, None
        params = parsed.get("client_params") if isinstance(parsed, dict) else None
        client_id = params.get("id") if isinstance(params, dict) else None
        group = params.get("group") if isinstance(params, dict) else None
        if not isinstance(client_id, str) or not client_id:
            return 400, {"kind": "invalid_client_params",
                         "value": "client_params.id must be a non-empty string"}, None
        if not isinstance(group, str) or not GROUP_RE.match(group):
            return 400, {"kind": "invalid_client_params",
                         "value": "client_params.group must match ^[a-zA-Z0-9.-]+$"}, None
        with self._lock:
            holders = self._holders.setdefault(group, set())
            if path == "/v1/steady-state":
                holders.discard(client_id)  # UnlockIfHeld: recursive, no error if not held
                return 200, {}, None
            if client_id in holders:  # RecursiveLock: already held by this id
                return 200, {}, None
            if len(holders) >= self.slots.get(group, self.default_slots):
                return 409, {"kind": "failed_lock_semaphore_full",
                             "value": "semaphore currently full, all slots are locked already"
                             }, None
            holders.add(client_id)
            self.peak[group] = max(self.peak.get(group, 0), len(holders))
            return 200, {}, None

    # -- test controls ----------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/"

    def holders(self, group: str = "default") -> set[str]:
        with self._lock:
            return set(self._holders.get(group, set()))

    def hold(self, group: str, client_id: str) -> None:
        with self._lock:
            self._holders.setdefault(group, set()).add(client_id)

    def release(self, group: str, client_id: str) -> None:
        with self._lock:
            self._holders.get(group, set()).discard(client_id)

    def fail_next(self, count: int, status: int = 502) -> None:
        with self._lock:
            self._faults.extend([status] * count)

    def __enter__(self) -> FleetLockServer:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--slots", type=int, default=1)
    args = parser.parse_args()
    with FleetLockServer(default_slots=args.slots, port=args.port) as srv:
        print(srv.base_url, flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main()
