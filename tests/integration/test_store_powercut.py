"""A commit to an installed host's repository survives a power cut right after it.

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

import os
import subprocess
from pathlib import Path

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
