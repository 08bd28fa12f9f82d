"""Install straight from a registry (Debian's docker-registry on 127.0.0.1)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from signalling import alive, signal_at
from synthetic import BOOTC_PY, SyntheticImages, run_cli

from bootc_py.disk.loop import LoopDevice
from bootc_py.disk.mount import Mount
from registry_fixture import Registry
from testlib import require_tool

pytestmark = pytest.mark.registry  # a docker-registry on 127.0.0.1


@pytest.fixture(scope="module")
def registry(synthetic: SyntheticImages,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    require_tool("docker-registry", "skopeo")
    with Registry(tmp_path_factory.mktemp("registry")) as reg:
        reg.push(synthetic.layout, "v1", "os/synthetic:1")
        yield reg


def test_install_from_a_registry(registry: Registry, tmp_path: Path) -> None:
    ref = f"docker://{registry.host}/os/synthetic:1"
    disk = tmp_path / "disk.raw"
    # Plain http is refused unless asked for: TLS is verified by default.
    refused = run_cli("install", "to-disk", "--via-loopback", "--source-imgref", ref,
                      "--cache-dir", str(tmp_path / "cache"), str(disk))
    assert refused.returncode != 0 and "--tls-verify" in refused.stderr
    assert not disk.exists()
    res = run_cli("install", "to-disk", "--via-loopback", "--source-imgref", ref,
                  "--tls-verify=false", "--cache-dir", str(tmp_path / "cache"), str(disk))
    assert res.returncode == 0, res.stderr
    mnt = tmp_path / "mnt"
    with LoopDevice(disk) as loop, Mount(loop.partition(4), mnt), \
            Mount(loop.partition(3), mnt / "boot"):
        origin = next((mnt / "ostree/deploy/default/deploy").glob("*.origin")).read_text()
        assert f"container-image-reference=ostree-unverified-registry:{registry.host}" \
            "/os/synthetic:1" in origin
        status = json.loads(run_cli("status", "--json", "--sysroot", str(mnt)).stdout)
        assert status["spec"]["image"] == {"image": f"{registry.host}/os/synthetic:1",
                                           "transport": "registry"}


def test_a_pull_signalled_mid_way_unwinds_and_a_rerun_installs(
        registry: Registry, tmp_path: Path) -> None:
    """SIGTERM while the layers download: no image file, no loop device, no finished blob
    that is not whole; the rerun resumes and installs the right image."""
    ref = f"docker://{registry.host}/os/synthetic:1"
    disk, cache = tmp_path / "disk.raw", tmp_path / "cache"
    cmd = [str(BOOTC_PY), "install", "to-disk", "--via-loopback", "--source-imgref", ref,
           "--tls-verify=false", "--cache-dir", str(cache), str(disk)]
    rc, err, kids = signal_at(cmd, "pull", signal.SIGTERM, tmp_path / "stderr",
                              dict(os.environ), delay=0)
    assert rc == 143, err
    assert "pull failed after" in err, "the signal did not arrive during the pull"
    assert "Traceback" not in err, err
    assert not disk.exists()
    assert not [k for k in kids if alive(k)]
    for blob in (cache / "blobs").rglob("*"):  # every blob kept is whole: its name is its hash
        if blob.is_file():
            assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name, blob
    res = run_cli(*cmd[1:])
    assert res.returncode == 0, res.stderr
    assert disk.stat().st_size > 0
