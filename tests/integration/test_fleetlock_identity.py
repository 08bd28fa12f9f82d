"""The FleetLock client id equals what the host's systemd computes for bootc-py's app id."""

from __future__ import annotations

from pathlib import Path

from bootc_py.run import output
from bootc_py.update import fleetlock
from testlib import require_tool


def test_client_id_matches_systemd_id128() -> None:
    require_tool("systemd-id128")
    want = output(["systemd-id128", "machine-id", f"--app-specific={fleetlock.APP_ID.hex()}"])
    assert fleetlock.machine_client_id(Path("/")) == want
