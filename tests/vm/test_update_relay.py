"""The guestfwd relay (vmharness/relay.py) without a guest: a real relay process with a
socket as its stdin/stdout, in front of a real docker-registry on 127.0.0.1; what a guest's
client sends is logged request line by request line, what the registry answers comes back
whole."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from registry_fixture import Registry
from vmharness.qemu import RELAY, GuestForward


def test_relay_copies_both_ways_and_logs_requests(tmp_path: Path) -> None:
    with Registry(tmp_path / "reg") as reg:
        log = tmp_path / "requests.log"
        guest, relay_end = socket.socketpair()
        proc = subprocess.Popen([sys.executable, str(RELAY), "127.0.0.1", str(reg.port),
                                 str(log)], stdin=relay_end, stdout=relay_end,
                                stderr=subprocess.DEVNULL)
        relay_end.close()
        with guest:
            # Two requests on one keep-alive connection, the second split mid-line.
            guest.sendall(b"GET /v2/ HTTP/1.1\r\nHost: 10.0.2.100:5000\r\n\r\n")
            answer = b""
            while b"\r\n\r\n" not in answer or not answer.endswith(b"{}"):
                answer += guest.recv(4096)
            guest.sendall(b"HEAD /v2/demo/manifests/")
            guest.sendall(b"v1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            while data := guest.recv(4096):
                answer += data
        proc.wait(timeout=10)
    assert answer.startswith(b"HTTP/1.1 200 OK")
    assert b"HTTP/1.1 404 Not Found" in answer
    assert log.read_text().splitlines() == ["GET /v2/", "HEAD /v2/demo/manifests/v1"]


def test_guestfwd_option_names_the_relay(tmp_path: Path) -> None:
    opt = GuestForward(host_port=41234, log=tmp_path / "r.log").netdev_option()
    assert opt == (f"guestfwd=tcp:10.0.2.100:5000-cmd:{sys.executable} {RELAY} 127.0.0.1 "
                   f"41234 {tmp_path / 'r.log'}")
