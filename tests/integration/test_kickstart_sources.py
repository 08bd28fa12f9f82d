"""A kickstart fetched over tftp:// (as PXE hands it over) and its relative %include fetched
from beside it: a real TFTP server on 127.0.0.1, curl as the client (via run.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from synthetic import run_cli

from tftp_server import TftpServer

pytestmark = pytest.mark.root


def test_tftp_kickstart_and_its_relative_include(tmp_path: Path) -> None:
    served = tmp_path / "tftpboot"
    (served / "pxe").mkdir(parents=True)
    (served / "pxe/ks.cfg").write_text(
        "bootc --source-imgref registry:127.0.0.1:5000/os:1\n%include parts/disk.ks\n"
        "user --name core --groups wheel\n")
    (served / "pxe/parts").mkdir()
    (served / "pxe/parts/disk.ks").write_text("reqpart --add-boot\npart / --size 3000 --grow\n")
    with TftpServer(served) as server:
        res = run_cli("kickstart", "validate", server.url("pxe/ks.cfg"))
        assert res.returncode == 0, res.stderr
        assert f"Kickstart:    {server.url('pxe/ks.cfg')}" in res.stdout
        assert "part /          fs       3000 MiB grow xfs" in res.stdout
        assert "user core: groups wheel" in res.stdout
        assert server.requests == ["pxe/ks.cfg", "pxe/parts/disk.ks"]

        gone = run_cli("kickstart", "validate", server.url("pxe/missing.cfg"))
        assert gone.returncode == 2
        assert gone.stderr.startswith(f"error: cannot fetch the kickstart "
                                      f"{server.url('pxe/missing.cfg')}")
        assert "Traceback" not in gone.stderr
