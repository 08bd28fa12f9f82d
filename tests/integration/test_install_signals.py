"""SIGTERM (systemd stopping a unit) and SIGHUP (a dropped ssh session) unwind like Ctrl-C.

A real `install to-disk --via-loopback` is signalled as it enters a step (read from its
--progress-fd stream); then nothing may remain: no loop device on the file, no mount under the
temporary target, no temp dir, no partial image file, no child process. A rerun then succeeds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from signalling import alive, signal_at
from synthetic import BOOTC_PY, SyntheticImages, run_cli

from bootc_py.disk.loop import LoopDevice
from testlib import require_tool


def _targets(tmp: Path) -> list[str]:
    return [p.name for p in tmp.glob("bootc-py-target-*")]


@pytest.mark.parametrize(("sig", "step", "then"), [
    (signal.SIGTERM, "partition", None),
    (signal.SIGTERM, "import", None),
    (signal.SIGTERM, "deploy", signal.SIGINT),  # Ctrl-C after systemd's stop: still ignored
    (signal.SIGHUP, "mount", None),
    (signal.SIGHUP, "bootloader", signal.SIGTERM),
    (signal.SIGINT, "init-sysroot", signal.SIGINT),  # Ctrl-C pressed twice
])
def test_signal_unwinds_everything_and_a_rerun_succeeds(
        synthetic: SyntheticImages, tmp_path: Path, sig: signal.Signals, step: str,
        then: signal.Signals | None) -> None:
    require_tool("xfs_repair", "e2fsck")
    disk = tmp_path / "disk.raw"
    cmd = [str(BOOTC_PY), "install", "to-disk", "--via-loopback", "--disk-size", "4G",
           "--source-imgref", synthetic.ref("v1"), "--cache-dir", str(synthetic.cache),
           str(disk)]
    tmp = tmp_path / "tmp"  # the install's TMPDIR: its temp target is made here
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp)}
    rc, err, kids = signal_at(cmd, step, sig, tmp_path / "stderr", env, then=then)

    assert rc == 128 + sig, err
    assert ("error: interrupted" if sig == signal.SIGINT
            else f"error: terminated by {sig.name}") in err
    assert "Traceback" not in err, err
    if then is not None:
        assert f"{then.name} received while cleaning up: ignored" in err
    assert not disk.exists(), "the partial image file was left behind"
    assert _targets(tmp) == [], "a temporary target directory was left behind"
    assert str(tmp) not in Path("/proc/self/mountinfo").read_text(), err
    assert str(tmp_path) not in subprocess.run(["losetup", "--list"], capture_output=True,
                                               text=True, check=True).stdout, err
    assert not [k for k in kids if alive(k)], "a child process outlived the install"

    res = run_cli(*cmd[1:])
    assert res.returncode == 0, res.stderr
    with LoopDevice(disk, read_only=True) as loop:
        subprocess.run(["xfs_repair", "-n", str(loop.partition(4))], check=True,
                       capture_output=True)
        subprocess.run(["e2fsck", "-fn", str(loop.partition(3))], check=True,
                       capture_output=True)


def test_nohup_keeps_the_hangup_ignored(synthetic: SyntheticImages, tmp_path: Path) -> None:
    """`nohup bootc-py install ...` asked to survive a dropped session: a SIGHUP ignored when
    bootc-py started stays ignored, and the install completes."""
    disk = tmp_path / "disk.raw"
    cmd = [str(BOOTC_PY), "install", "to-disk", "--via-loopback", "--disk-size", "4G",
           "--source-imgref", synthetic.ref("v1"), "--cache-dir", str(synthetic.cache),
           str(disk)]
    rc, err, _ = signal_at(cmd, "mount", signal.SIGHUP, tmp_path / "stderr", dict(os.environ),
                           ignored=True)
    assert rc == 0, err
    assert "terminated" not in err
    with LoopDevice(disk, read_only=True) as loop:
        subprocess.run(["xfs_repair", "-n", str(loop.partition(4))], check=True,
                       capture_output=True)


@pytest.mark.parametrize("step", ["convert-qcow2", "convert-vmdk"])
def test_a_signalled_build_leaves_no_artifact_and_a_rerun_builds_all(
        synthetic: SyntheticImages, tmp_path: Path, step: str) -> None:
    """build converted straight into the final name: a SIGTERM during `qemu-img convert` left
    an incomplete disk.vmdk (and the finished qcow2) that looked like a result."""
    out = tmp_path / "out"
    cmd = [str(BOOTC_PY), "build", "--type", "qcow2,vmdk", "--output", str(out),
           "--disk-size", "4G", "--cache-dir", str(synthetic.cache), synthetic.ref("v1")]
    rc, err, kids = signal_at(cmd, step, signal.SIGTERM, tmp_path / "stderr",
                               {**os.environ, "TMPDIR": str(tmp_path)})
    assert rc == 143, err
    assert "Traceback" not in err, err
    assert [str(p.relative_to(out)) for p in out.rglob("*")] == [], "a partial build was left"
    assert str(tmp_path) not in subprocess.run(["losetup", "--list"], capture_output=True,
                                               text=True, check=True).stdout, err
    assert not [k for k in kids if alive(k)], "qemu-img outlived the build"
    res = run_cli(*cmd[1:])
    assert res.returncode == 0, res.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert [a["path"] for a in manifest["artifacts"]] == ["qcow2/disk.qcow2", "vmdk/disk.vmdk"]
    assert not list(out.rglob("*.partial"))
