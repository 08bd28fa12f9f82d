"""A read-only TFTP server (RFC 1350, octet and netascii read as bytes) on 127.0.0.1, for the
tests that fetch a kickstart over tftp:// as PXE does. Options (RFC 2347) are ignored: the
server answers with DATA, which clients take as "no options"."""

from __future__ import annotations

import socket
import struct
import threading
from pathlib import Path
from types import TracebackType

RRQ, DATA, ACK, ERROR = 1, 3, 4, 5
BLOCK = 512
RETRIES = 5


class TftpServer:
    """`with TftpServer(root) as srv: srv.url("ks.cfg")`; files are served from `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.requests: list[str] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def port(self) -> int:
        return int(self._sock.getsockname()[1])

    def url(self, name: str) -> str:
        return f"tftp://127.0.0.1:{self.port}/{name}"

    def __enter__(self) -> TftpServer:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                packet, client = self._sock.recvfrom(2048)
            except TimeoutError:
                continue
            if len(packet) < 4 or struct.unpack("!H", packet[:2])[0] != RRQ:
                continue
            name = packet[2:].split(b"\0")[0].decode(errors="replace").lstrip("/")
            self.requests.append(name)
            threading.Thread(target=self._send, args=(name, client), daemon=True).start()

    def _send(self, name: str, client: tuple[str, int]) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # a new TID per transfer
            s.bind(("127.0.0.1", 0))
            s.settimeout(1.0)
            path = (self.root / name).resolve()
            if self.root not in path.parents or not path.is_file():
                s.sendto(struct.pack("!HH", ERROR, 1) + b"File not found\0", client)
                return
            data = path.read_bytes()
            block = 1
            while True:
                chunk = data[(block - 1) * BLOCK:block * BLOCK]
                packet = struct.pack("!HH", DATA, block & 0xFFFF) + chunk
                for _ in range(RETRIES):
                    s.sendto(packet, client)
                    try:
                        reply, _ = s.recvfrom(512)
                    except TimeoutError:
                        continue
                    if reply[:2] == struct.pack("!H", ACK) and \
                            struct.unpack("!H", reply[2:4])[0] == block & 0xFFFF:
                        break
                else:
                    return  # the client went away
                if len(chunk) < BLOCK:
                    return
                block += 1
