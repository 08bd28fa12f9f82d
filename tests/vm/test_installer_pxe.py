"""The PXE bundle: `build --type pxe-tar-xz` of the sample image, unpacked as is into the root
of an HTTP server on 127.0.0.1; qemu's iPXE chains boot.ipxe from it (the DHCP boot file, a
URL the guest reaches only through a restricted user-net relay), the live system installs
the bundle's own payload unattended onto the empty disk, and the disk then boots on its own.

Boots: the live system (install; the default kickstart's reboot ends qemu) 1, the disk 1.
"""

from __future__ import annotations

import functools
import http.server
import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from vmharness import VM, Drive, GuestForward
from vmharness.samples import SampleImages

BOOTC_PY = Path(sys.executable).parent / "bootc-py"
TARGET = "127.0.0.1:5000/bootc-py-fixture:v1"
LIVE_INSTALL_TIMEOUT = 1500


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        self.server.requests.append(args[0] if args else format)  # type: ignore[attr-defined]


@contextmanager
def http_root(directory: Path) -> Iterator[tuple[int, list[str]]]:
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.requests = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], server.requests  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.timeout(3600)
def test_pxe_bundle_over_http_installs_and_the_disk_boots(
        sample_images: SampleImages, boot_check: Callable[..., dict[str, Any]],
        tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = subprocess.run([str(BOOTC_PY), "build", "--type", "pxe-tar-xz", "--output", str(out),
                          "--target-imgref", TARGET, "--karg", "console=ttyS0,115200n8",
                          sample_images.ref("v1")], capture_output=True, text=True,
                         timeout=1800)
    assert res.returncode == 0, res.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert [(a["type"], a["path"]) for a in manifest["artifacts"]] == [
        ("pxe-tar-xz", "xz/pxe.tar.xz")]
    root = tmp_path / "http"
    root.mkdir()
    subprocess.run(["tar", "-C", str(root), "-xf", str(out / "xz/pxe.tar.xz")], check=True)
    assert sorted(p.name for p in root.iterdir()) == [
        "boot.ipxe", "grub.cfg", "initrd.img", "rootfs.img", "vmlinuz"]

    disk = tmp_path / "target.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "12G"], check=True)
    with http_root(root) as (port, requests), \
            VM(drives=[Drive(disk, serial="target")], boot="net", firmware="bios",
               guest_forwards=[GuestForward(port, guest_port=80)],
               bootfile="http://10.0.2.100/boot.ipxe", memory_mb=3072, name="pxe",
               workdir=tmp_path / "pxe") as vm:
        vm.wait_exit(timeout=LIVE_INSTALL_TIMEOUT)
        serial = vm.serial_text()
        fetched = list(requests)
    for name in ("boot.ipxe", "vmlinuz", "initrd.img", "rootfs.img"):
        assert any(f"GET /{name} " in r for r in fetched), fetched
    assert "bootc-py live installer: starting" in serial, serial[-4000:]
    assert "kickstart: built-in default" in serial
    assert "bootc-py live installer: installed onto /dev/vda" in serial, serial[-4000:]
    assert ": kept from an earlier scan" in serial  # the payload's summary, made by the build

    facts = boot_check(Drive(disk), firmware="bios", name="pxe-installed", last=True)
    assert facts["variant"] == "v1"
    assert facts["failed_units"] == [], facts["failed_units"]
    assert facts["mounts"]["/sysroot"]["source"].startswith("/dev/mapper/")
    status = facts["bootc_py"]
    assert status and status["ok"], status
    booted = status["status"]["status"]["booted"]
    assert booted["image"]["image"] == {"image": TARGET, "transport": "registry"}
    assert booted["image"]["imageDigest"] == sample_images.manifest_digest("v1")
