"""One guest connection relayed to a server on the host's loopback (qemu's guestfwd -cmd).

    qemu ... -netdev user,restrict=on,guestfwd=tcp:10.0.2.100:5000-cmd:python3 relay.py \
        127.0.0.1 PORT LOG

qemu starts one of these per connection the guest opens to 10.0.2.100:5000, with the
connection on stdin/stdout (and stderr: never write there). It copies bytes both ways, and
appends every HTTP request line the guest sends (`GET /v2/.../blobs/sha256:...`) to LOG, so a
test can count what a guest fetched. Standard library only.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import socket
import sys

REQUEST = re.compile(rb"^(GET|HEAD|POST|PUT|PATCH|DELETE) (\S+) HTTP/1\.[01]$")
MAX_LINE = 16 << 10


class RequestLog:
    """Finds request lines in the client's byte stream (split anywhere across reads)."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.partial = b""

    def feed(self, data: bytes) -> None:
        if not self.path:
            return
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()[-MAX_LINE:]
        found = [m.group(1) + b" " + m.group(2) for m in
                 (REQUEST.match(line.rstrip(b"\r")) for line in lines) if m]
        if found:
            # O_APPEND: lines of concurrent relays do not interleave.
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, b"".join(f + b"\n" for f in found))
            finally:
                os.close(fd)


def relay(host: str, port: int, log: RequestLog) -> None:
    server = socket.create_connection((host, port))
    guest_in, guest_out = 0, 1
    with server:
        server_fd = server.fileno()  # select() over file descriptors of one type
        while True:
            ready, _, _ = select.select([guest_in, server_fd], [], [])
            if guest_in in ready:
                data = os.read(guest_in, 1 << 16)
                if not data:
                    with contextlib.suppress(OSError):
                        server.shutdown(socket.SHUT_WR)
                    break
                log.feed(data)
                server.sendall(data)
            if server_fd in ready:
                data = server.recv(1 << 16)
                if not data:
                    return
                _write_all(guest_out, data)
        # The guest closed its side: drain the server's answer.
        while data := server.recv(1 << 16):
            _write_all(guest_out, data)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def main(argv: list[str]) -> int:
    host, port = argv[1], int(argv[2])
    with contextlib.suppress(OSError):          # either side hanging up ends the relay
        relay(host, port, RequestLog(argv[3] if len(argv) > 3 else None))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
