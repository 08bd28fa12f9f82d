"""SIGTERM (systemd stopping a unit) and SIGHUP (a dropped ssh session) unwind like Ctrl-C.

A real `install to-disk --via-loopback` is signalled as it enters a step (read from its
--progress-fd stream); then nothing may remain: no loop device on the file, no mount under the
temporary target, no temp dir, no partial image file, no child process. A rerun then succeeds.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from synthetic import BOOTC_PY, SyntheticImages, run_cli

from bootc_py.disk.loop import LoopDevice
from testlib import require_tool


def _targets(tmp: Path) -> list[str]:
    return [p.name for p in tmp.glob("bootc-py-target-*")]


def _children(pid: int) -> set[int]:
    kids: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):  # the task ended meanwhile
            kids |= {int(k) for k in task.read_text().split()}
    return kids


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


def _signal_at(cmd: list[str], step: str, sig: signal.Signals, log: Path,
               env: dict[str, str]) -> tuple[int, str, set[int]]:
    """Run `cmd`, send `sig` when it starts `step`; (exit code, stderr, its children then)."""
    read_fd, write_fd = os.pipe()
    with open(log, "w+") as err:
        proc = subprocess.Popen([*cmd[:1], "--progress-fd", str(write_fd), *cmd[1:]],
                                stdout=subprocess.DEVNULL, stderr=err, pass_fds=(write_fd,),
                                env=env)
        os.close(write_fd)
        kids: set[int] = set()
        with os.fdopen(read_fd) as events:
            for line in events:
                event = json.loads(line)
                if event.get("type") == "ProgressSteps" and event["id"] == step \
                        and event["steps"] == 0:
                    time.sleep(0.2)  # inside the step, most likely in a child program
                    kids = _children(proc.pid)
                    proc.send_signal(sig)
                    break
            else:
                pytest.fail(f"the install ended before step {step}: {log.read_text()}")
            rc = proc.wait(timeout=120)
        err.seek(0)
        return rc, err.read(), kids


@pytest.mark.parametrize(("sig", "step"), [
    (signal.SIGTERM, "partition"),
    (signal.SIGTERM, "deploy"),
    (signal.SIGHUP, "mount"),
    (signal.SIGHUP, "bootloader"),
])
def test_signal_unwinds_everything_and_a_rerun_succeeds(
        synthetic: SyntheticImages, tmp_path: Path, sig: signal.Signals, step: str) -> None:
    require_tool("xfs_repair", "e2fsck")
    disk = tmp_path / "disk.raw"
    cmd = [str(BOOTC_PY), "install", "to-disk", "--via-loopback", "--disk-size", "4G",
           "--source-imgref", synthetic.ref("v1"), "--cache-dir", str(synthetic.cache),
           str(disk)]
    tmp = tmp_path / "tmp"  # the install's TMPDIR: its temp target is made here
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp)}
    rc, err, kids = _signal_at(cmd, step, sig, tmp_path / "stderr", env)

    assert rc == 128 + sig, err
    assert f"error: terminated by {sig.name}" in err
    assert "Traceback" not in err, err
    assert not disk.exists(), "the partial image file was left behind"
    assert _targets(tmp) == [], "a temporary target directory was left behind"
    assert str(tmp) not in Path("/proc/self/mountinfo").read_text(), err
    assert str(tmp_path) not in subprocess.run(["losetup", "--list"], capture_output=True,
                                               text=True, check=True).stdout, err
    assert not [k for k in kids if _alive(k)], "a child process outlived the install"

    res = run_cli(*cmd[1:])
    assert res.returncode == 0, res.stderr
    with LoopDevice(disk, read_only=True) as loop:
        subprocess.run(["xfs_repair", "-n", str(loop.partition(4))], check=True,
                       capture_output=True)
        subprocess.run(["e2fsck", "-fn", str(loop.partition(3))], check=True,
                       capture_output=True)


@pytest.mark.parametrize("step", ["convert-qcow2", "convert-vmdk"])
def test_a_signalled_build_leaves_no_artifact_and_a_rerun_builds_all(
        synthetic: SyntheticImages, tmp_path: Path, step: str) -> None:
    """build converted straight into the final name: a SIGTERM during `qemu-img convert` left
    an incomplete disk.vmdk (and the finished qcow2) that looked like a result."""
    out = tmp_path / "out"
    cmd = [str(BOOTC_PY), "build", "--type", "qcow2,vmdk", "--output", str(out),
           "--disk-size", "4G", "--cache-dir", str(synthetic.cache), synthetic.ref("v1")]
    rc, err, kids = _signal_at(cmd, step, signal.SIGTERM, tmp_path / "stderr",
                               {**os.environ, "TMPDIR": str(tmp_path)})
    assert rc == 143, err
    assert "Traceback" not in err, err
    assert [str(p.relative_to(out)) for p in out.rglob("*")] == [], "a partial build was left"
    assert str(tmp_path) not in subprocess.run(["losetup", "--list"], capture_output=True,
                                               text=True, check=True).stdout, err
    assert not [k for k in kids if _alive(k)], "qemu-img outlived the build"
    res = run_cli(*cmd[1:])
    assert res.returncode == 0, res.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert [a["path"] for a in manifest["artifacts"]] == ["qcow2/disk.qcow2", "vmdk/disk.vmdk"]
    assert not list(out.rglob("*.partial"))
