"""Power cuts on an installed disk: a commit survives one right after it; an update cut
while importing or deploying leaves the old or the new deployment, whole.

The cut is XFS's shutdown ioctl (`xfs_io -x -c "shutdown -f"`, xfstests' godown): the
metadata log reaches the disk, file data still in the page cache does not, as in a power cut
on a host where anything else fsyncs. Then the filesystem is mounted again (log recovery).

The defect this guards against: the updater committed with `ostree commit --fsync=false`, so
after such a cut the layer's ref was 65 NUL bytes (its name and size were logged, its content
never written): every later `ostree refs`/`fsck`/prune failed with "Listing refs: Invalid
UTF-8", and an object could exist under its name with content that never reached the disk,
which a rerun of `upgrade` would have reused.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from synthetic import BOOTC_PY, SyntheticImages, run_cli

from bootc_py.disk.loop import LoopDevice
from bootc_py.disk.mount import Mount
from bootc_py.store.repo import OstreeRepo
from bootc_py.store.sysroot import Sysroot
from testlib import require_tool

BRANCH = "bootc-py/layer/sha256_test"


def _power_cut(mnt: Path) -> None:
    subprocess.run(["xfs_io", "-x", "-c", "shutdown -f", str(mnt)], check=True)


def test_a_commit_to_an_installed_hosts_repository_survives_a_power_cut(tmp_path: Path
                                                                        ) -> None:
    require_tool("mkfs.xfs", "xfs_io", "ostree")
    disk = tmp_path / "disk.img"
    with open(disk, "wb") as f:
        f.truncate(300 << 20)
    subprocess.run(["mkfs.xfs", "-q", str(disk)], check=True)
    tree = tmp_path / "tree"
    (tree / "usr/share/layer").mkdir(parents=True)
    for i in range(200):
        (tree / f"usr/share/layer/f{i}").write_bytes(os.urandom(3000))
    mnt = tmp_path / "mnt"
    with LoopDevice(disk) as loop:
        with Mount(loop.path, mnt):
            OstreeRepo(mnt / "ostree/repo").init("bare")
            store = Sysroot(mnt)            # as `upgrade --sysroot` and the booted host open it
            commit = store.repo.commit(tree, branch=BRANCH, subject="layer")
            # Written, never synced: proves the cut below really drops unsynced data.
            (mnt / "canary").write_bytes(b"canary\n")
            _power_cut(mnt)
        with Mount(loop.path, mnt):
            canary = mnt / "canary"
            assert not canary.exists() or canary.read_bytes() != b"canary\n"
            assert store.repo.rev_parse(BRANCH) == commit
            fsck = subprocess.run(["ostree", f"--repo={mnt / 'ostree/repo'}", "fsck"],
                                  capture_output=True, text=True)
            assert fsck.returncode == 0, fsck.stderr
            assert "no errors found" in fsck.stdout, fsck.stdout


def _cut_when(mnt: Path, argv: list[str], pattern: str) -> str:
    """Run bootc-py; when its log shows `pattern`, cut the power: both filesystems of the
    disk shut down at once and the process stops (killed). Returns what it logged."""
    proc = subprocess.Popen([str(BOOTC_PY), *argv], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if pattern in line:
            for fs in (mnt / "boot", mnt):
                subprocess.run(["xfs_io", "-x", "-c", "shutdown -f", str(fs)], check=True)
            os.killpg(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=120)
    log = "".join(seen)
    assert pattern in log, f"bootc-py ended before {pattern!r}:\n{log}"
    return log


def _default_variant(mnt: Path) -> tuple[str, int]:
    """(variant in the default deployment's /usr, number of deployments), from status."""
    res = run_cli("status", "--json", "--sysroot", str(mnt))
    assert res.returncode == 0, res.stderr
    deps = json.loads(res.stdout)["status"]["deployments"]
    dep = next(d for d in deps if d["default"])["ostree"]
    root = mnt / "ostree/deploy/default/deploy" / f"{dep['checksum']}.{dep['deploySerial']}"
    return (root / "usr/share/syn/variant").read_text().strip(), len(deps)


def _fsck(mnt: Path) -> None:
    res = subprocess.run(["ostree", f"--repo={mnt / 'ostree/repo'}", "fsck"],
                         capture_output=True, text=True)
    assert res.returncode == 0 and "no errors found" in res.stdout, res.stdout + res.stderr


@contextmanager
def _mounted(disk: Path) -> Iterator[Path]:
    with LoopDevice(disk) as loop, tempfile.TemporaryDirectory(prefix="bootc-py-cut-") as tmp:
        mnt = Path(tmp)
        with Mount(loop.partition(4), mnt), Mount(loop.partition(3), mnt / "boot"):
            yield mnt


def test_switch_cut_during_import_and_deploy_leaves_a_whole_disk(
        synthetic: SyntheticImages, tmp_path: Path) -> None:
    """Offline (`--sysroot`), a power cut while the import assembles the OS tree, then one
    while ostree deploys: each time the disk's default is v1 or v2, whole (ostree fsck), and
    the rerun succeeds."""
    require_tool("xfs_io", "ostree")
    disk = tmp_path / "disk.raw"
    res = run_cli("install", "to-disk", "--via-loopback", "--disk-size", "3G",
                  "--source-imgref", synthetic.ref("v1"), "--cache-dir",
                  str(tmp_path / "cache"), str(disk))
    assert res.returncode == 0, res.stderr
    switch = ["switch", "--transport", "oci", f"{synthetic.layout}:v2"]
    with _mounted(disk) as mnt:
        _cut_when(mnt, [*switch, "--sysroot", str(mnt)], "==> Assembling the OS tree")
    with _mounted(disk) as mnt:
        assert _default_variant(mnt) == ("v1", 1)
        _fsck(mnt)
        _cut_when(mnt, [*switch, "--sysroot", str(mnt)], "==> Deploying")
    with _mounted(disk) as mnt:
        variant, count = _default_variant(mnt)
        assert (variant, count) in (("v1", 1), ("v2", 2)), (variant, count)
        _fsck(mnt)
        if variant == "v1":
            res = run_cli(*switch, "--sysroot", str(mnt))
            assert res.returncode == 0, res.stderr
        assert _default_variant(mnt) == ("v2", 2)
        _fsck(mnt)
