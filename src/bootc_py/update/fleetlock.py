"""FleetLock client: ask a fleet-wide counting semaphore for a reboot slot, and give it back.

The protocol is Zincati's (docs/development/fleetlock/protocol.md): two POST endpoints under a
deployment-specific base URL, `/v1/pre-reboot` (RecursiveLock) and `/v1/steady-state`
(UnlockIfHeld); a `fleet-lock-protocol: true` header; a body
`{"client_params": {"id": ..., "group": ...}}`. Only 200 is success; errors SHOULD come back as
`{"kind": ..., "value": ...}`. Servers: airlock (etcd), poseidon/fleetlock (Kubernetes).

The client id is systemd's app-specific machine id (sd_id128_get_machine_app_specific) with
bootc-py's own app id, so it is stable per machine, differs from Zincati's, and does not leak
/etc/machine-id.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bootc_py.errors import BootcPyError, ConfigError

if TYPE_CHECKING:  # requests loads when a client talks, not for every agent or boot unit run
    import requests

log = logging.getLogger(__name__)

# bootc-py's app id for sd_id128_get_app_specific() (a random v4 UUID picked once; never change
# it: every machine's FleetLock identity derives from it).
APP_ID = bytes.fromhex("6a1f0c3e9b7d4e28a5c2f4b1d8e07a93")

PRE_REBOOT = "/v1/pre-reboot"
STEADY_STATE = "/v1/steady-state"
HEADER = {"fleet-lock-protocol": "true"}
GROUP_RE = re.compile(r"^[a-zA-Z0-9.-]+$")
DEFAULT_GROUP = "default"


class FleetLockError(BootcPyError):
    """The FleetLock server refused or could not be reached.

    `kind` is the server's error kind (or "transport" / "http_<status>" when it sent none);
    `value` its human-readable text.
    """

    def __init__(self, operation: str, kind: str, value: str, status: int | None = None) -> None:
        where = f"HTTP {status}" if status is not None else "no answer"
        super().__init__(f"FleetLock {operation} failed ({where}): {kind}: {value}",
                         "the update stays staged; bootc-py retries with backoff")
        self.operation = operation
        self.kind = kind
        self.value = value
        self.status = status


def app_specific_id(machine_id: str, app_id: bytes = APP_ID) -> str:
    """sd_id128_get_app_specific(machine_id, app_id), as 32 lowercase hex digits.

    systemd: HMAC-SHA256 keyed by the 16 machine-id bytes over the 16 app-id bytes, first half
    kept, then made a v4 UUID (version nibble 4, RFC 4122 variant).
    """
    text = machine_id.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{32}", text) or text == "0" * 32:
        raise ConfigError(f"invalid machine id {machine_id.strip()!r}",
                          "/etc/machine-id must hold 32 hex digits (systemd-machine-id-setup)")
    digest = bytearray(hmac.new(bytes.fromhex(text), app_id, hashlib.sha256).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x40
    digest[8] = (digest[8] & 0x3F) | 0x80
    return digest.hex()


def machine_client_id(root: Path = Path("/")) -> str:
    """This machine's FleetLock id, from <root>/etc/machine-id."""
    path = root / "etc/machine-id"
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}",
                          "FleetLock needs a machine id (systemd-machine-id-setup)") from exc
    return app_specific_id(text)


def validate_group(group: str) -> str:
    if not GROUP_RE.match(group):
        raise ConfigError(f"invalid FleetLock group {group!r}",
                          "a group is letters, digits, '.' and '-' only (e.g. 'workers')")
    return group


def validate_base_url(base_url: str) -> str:
    if not re.match(r"^https?://[^/\s]+", base_url):
        raise ConfigError(f"invalid FleetLock base_url {base_url!r}",
                          "use an http:// or https:// URL, e.g. 'http://fleetlock.example:8080/'")
    return base_url


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter (so a fleet released at once does not stampede)."""

    initial: float = 1.0
    cap: float = 300.0
    factor: float = 2.0
    jitter: bool = True

    def nth(self, attempt: int, rng: random.Random | None = None) -> float:
        """The delay after the `attempt`-th failure in a row (0-based), jittered."""
        step = min(self.cap, self.initial * self.factor ** min(attempt, 64))
        return (rng or random.Random()).uniform(step / 2, step) if self.jitter else step

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        rng = rng or random.Random()
        step = self.initial
        while True:
            yield rng.uniform(step / 2, step) if self.jitter else step
            step = min(self.cap, step * self.factor)


class FleetLockClient:
    def __init__(self, base_url: str, group: str, client_id: str, *, timeout: float = 10.0,
                 session: requests.Session | None = None) -> None:
        self.base_url = validate_base_url(base_url).rstrip("/")
        self.group = validate_group(group)
        if not client_id:
            raise ConfigError("empty FleetLock client id")
        self.client_id = client_id
        self.timeout = timeout
        if session is None:
            import requests

            session = requests.Session()
        self.session = session

    def body(self) -> dict[str, dict[str, str]]:
        return {"client_params": {"id": self.client_id, "group": self.group}}

    def _post(self, operation: str, endpoint: str) -> None:
        import requests

        url = self.base_url + endpoint
        try:
            resp = self.session.post(url, headers=HEADER, data=json.dumps(self.body()),
                                     timeout=self.timeout, allow_redirects=False)
        except requests.RequestException as exc:
            raise FleetLockError(operation, "transport", f"{url}: {exc}") from exc
        if resp.status_code == 200:
            log.debug("FleetLock %s: ok (%s, group %s)", operation, self.client_id, self.group)
            return
        kind, value = f"http_{resp.status_code}", (resp.text.strip()[:200] or resp.reason)
        try:
            data = resp.json()
        except ValueError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("kind"), str) and data["kind"]:
            kind = data["kind"]
            value = str(data.get("value") or value)
        raise FleetLockError(operation, kind, value, resp.status_code)

    def pre_reboot(self) -> None:
        """RecursiveLock: take a reboot slot (again, if this id already holds one)."""
        self._post("pre-reboot", PRE_REBOOT)

    def steady_state(self) -> None:
        """UnlockIfHeld: give back this id's slot (fine if it holds none)."""
        self._post("steady-state", STEADY_STATE)

    def lock(self, *, backoff: Backoff = Backoff(), deadline: float | None = None,
             sleep: Callable[[float], None] = time.sleep) -> int:
        """pre_reboot until granted; returns how many attempts were refused."""
        return retry(self.pre_reboot, backoff=backoff, deadline=deadline, sleep=sleep)

    def unlock(self, *, backoff: Backoff = Backoff(), deadline: float | None = None,
               sleep: Callable[[float], None] = time.sleep) -> int:
        """steady_state until the server confirms."""
        return retry(self.steady_state, backoff=backoff, deadline=deadline, sleep=sleep)


def retry(operation: Callable[[], None], *, backoff: Backoff = Backoff(),
          deadline: float | None = None, sleep: Callable[[float], None] = time.sleep,
          clock: Callable[[], float] = time.monotonic,
          rng: random.Random | None = None) -> int:
    """Call `operation` until it succeeds; FleetLockError means wait and try again.

    Returns the number of failed attempts. With `deadline` (seconds from now) the last
    FleetLockError is raised once the next wait would pass it.
    """
    end = None if deadline is None else clock() + deadline
    failures = 0
    for delay in backoff.delays(rng):
        try:
            operation()
            return failures
        except FleetLockError as exc:
            failures += 1
            if end is not None and clock() + delay > end:
                raise
            log.info("%s; retrying in %.1fs", exc.message, delay)
            sleep(delay)
    raise AssertionError("unreachable: backoff delays are endless")
