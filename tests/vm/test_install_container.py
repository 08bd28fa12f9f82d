"""The bootc way: `podman run --privileged ... IMAGE bootc-py install to-disk` (and
`to-existing-root`), with no --source-imgref. The bootc-py inside the sample image (Debian's
python3 and libraries) reads its own image out of the host's container storage and installs
it; the disk then boots.

It lives with the VM tests because the proof is a boot.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bootc_py.disk.loop import LoopDevice
from bootc_py.disk.mount import Mount
from testlib import require_tool
from vmharness import Drive
from vmharness.samples import SampleImages

NAME = "localhost/bootc-py-sample:v1"


def sh(*argv: str, env: dict[str, str] | None = None, timeout: float = 900) -> str:
    res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                         env={**os.environ, **(env or {})})
    assert res.returncode == 0, f"{' '.join(argv[:4])} failed:\n{res.stderr[-3000:]}"
    return res.stdout


def short_runroot(tmp_path: Path) -> Path:
    """podman refuses a runroot path longer than 50 characters: a short link to one."""
    link = Path("/tmp") / f"bpy-run-{abs(hash(str(tmp_path))) % 10**8}"
    if not link.is_symlink():
        (tmp_path / "run").mkdir(exist_ok=True)
        link.symlink_to(tmp_path / "run")
    return link


@pytest.fixture()
def podman(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """podman with its own storage under tmp_path, runc (crun fails on this host's cgroups)."""
    require_tool("podman", "runc", "skopeo")
    conf = tmp_path / "containers.conf"
    conf.write_text('[containers]\ndefault_ulimits = []\n'
                    '[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\n'
                    'events_logger = "file"\n')
    store = tmp_path / "containers/storage"
    runroot = short_runroot(tmp_path)
    env = {"CONTAINERS_CONF": str(conf)}
    base = ["podman", "--root", str(store), "--runroot", str(runroot),
            "--storage-driver", "overlay"]

    def run(*args: str) -> str:
        return sh(*base, *args, env=env)
    # No `run --rm`: podman 4.3's cleanup process can remove the container before `run` reads
    # its exit code ("no such exit code (container in state running)", exit 127 after a whole
    # install). The containers go with `rm --all` below.
    yield run
    for cleanup in (["rm", "--all", "--force"], ["system", "reset", "--force"]):
        subprocess.run([*base, *cleanup], capture_output=True, env={**os.environ, **env})
    # The overlay driver bind-mounts its own directory; reset leaves that mount behind.
    for line in reversed(Path("/proc/self/mounts").read_text().splitlines()):
        target = line.split()[1]
        if target.startswith(f"{tmp_path}/"):
            subprocess.run(["umount", "--lazy", target], capture_output=True)
    runroot.unlink(missing_ok=True)


def test_install_from_inside_the_image(sample_images: SampleImages, podman: Callable[..., str],
                                       boot_check: Callable[..., dict[str, Any]],
                                       tmp_path: Path) -> None:
    store = tmp_path / "containers/storage"
    runroot = short_runroot(tmp_path)
    sh("skopeo", "copy", "--quiet", sample_images.ref("v1"),
       f"containers-storage:[overlay@{store}+{runroot}]{NAME}")
    out = tmp_path / "out"
    out.mkdir()
    log = podman("run", "--privileged", "--pid=host", "--network=none",
                 "--security-opt", "label=disable",
                 "-v", "/dev:/dev", "-v", f"{tmp_path / 'containers'}:/var/lib/containers",
                 "-v", f"{out}:/output", NAME,
                 "bootc-py", "install", "to-disk", "--via-loopback", "--disk-size", "4G",
                 "--karg", "console=ttyS0,115200n8", "/output/disk.raw")
    assert "Installed containers-storage:" in log
    disk = out / "disk.raw"
    facts = boot_check(Drive(disk), firmware="uefi", name="from-container", last=True)
    assert facts["variant"] == "v1" and facts["failed_units"] == []
    assert facts["mounts"]["/usr"]["ro"] and facts["mounts"]["/etc"]["writable"]
    booted = facts["bootc_py"]["status"]["status"]["booted"]
    # Updates follow the image's name, as with bootc; the digest is the image's own.
    assert booted["image"]["image"] == {"image": NAME, "transport": "registry"}
    stored = f"containers-storage:[overlay@{store}+{runroot}]{NAME}"
    # The digest is the stored image's own (skopeo inspect, podman images --digests: sample
    # v1's manifest digest), not that of skopeo's re-compressed copy out of the storage.
    own = json.loads(sh("skopeo", "inspect", stored))["Digest"]
    assert own == sample_images.manifest_digest("v1")
    assert booted["image"]["imageDigest"] == own
    inspect = json.loads(sh("skopeo", "inspect", "--raw", stored))
    assert len(inspect["layers"]) == len(sample_images.layer_digests("v1"))


def test_takeover_from_inside_the_image_then_the_disk_boots(
        sample_images: SampleImages, podman: Callable[..., str], plain_disk_base: Path,
        boot_check: Callable[..., dict[str, Any]], tmp_path: Path) -> None:
    """bootc's documented form of to-existing-root: `podman run --privileged --pid=host
    -v /:/target -v /dev:/dev -v /var/lib/containers:/var/lib/containers IMAGE bootc-py
    install to-existing-root`, no --source-imgref. The root given as /target here is not this
    machine's own but vm-fixtures' plain Debian disk, on a loop device and mounted; after the
    takeover that disk boots the image, the old system readable under /sysroot."""
    store = tmp_path / "containers/storage"
    runroot = short_runroot(tmp_path)
    sh("skopeo", "copy", "--quiet", sample_images.ref("v1"),
       f"containers-storage:[overlay@{store}+{runroot}]{NAME}")
    disk = tmp_path / "plain.raw"
    sh("qemu-img", "convert", "-O", "raw", str(plain_disk_base), str(disk))
    target = tmp_path / "target"
    with LoopDevice(disk) as loop, Mount(loop.partition(3), target):
        old_version = (target / "etc/debian_version").read_text().strip()
        log = podman("run", "--privileged", "--pid=host", "--network=none",
                     "--security-opt", "label=disable",
                     "-v", "/dev:/dev", "-v", f"{target}:/target",
                     "-v", f"{tmp_path / 'containers'}:/var/lib/containers", NAME,
                     "bootc-py", "install", "to-existing-root", "--acknowledge-destructive",
                     "--karg", "console=ttyS0,115200n8")
        assert "alongside the system on" in log, log
        assert (target / "etc/debian_version").read_text().strip() == old_version
    facts = boot_check(Drive(disk), firmware="bios", name="taken-over-from-container",
                       script="cat /sysroot/etc/debian_version\n", last=True)
    assert facts["variant"] == "v1" and facts["failed_units"] == [], facts["failed_units"]
    assert "/ostree/deploy/default/deploy/" in facts["mounts"]["/"]["source"]
    assert facts["mounts"]["/usr"]["ro"] and facts["mounts"]["/etc"]["writable"]
    assert facts["script"]["stdout"].strip() == old_version
    booted = facts["bootc_py"]["status"]["status"]["booted"]
    assert booted["image"]["image"] == {"image": NAME, "transport": "registry"}
    assert booted["image"]["imageDigest"] == sample_images.manifest_digest("v1")
