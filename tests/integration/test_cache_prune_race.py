"""`image prune --all` while another process uses cached blobs waits for it, deleting nothing
that is in use: every process holding a pulled image keeps a shared lock on the cache."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from synthetic import BOOTC_PY, SyntheticImages


@pytest.mark.parametrize("user", ["install", "unpack"])
def test_prune_all_waits_for_a_process_using_the_cache(synthetic: SyntheticImages,
                                                      tmp_path: Path, user: str) -> None:
    """An install paused as it starts reading the layers into ostree, an `image unpack`
    paused as it starts writing them out: prune waits, and both finish intact."""
    cache = tmp_path / "cache"
    out = tmp_path / ("disk.raw" if user == "install" else "root")
    read_fd, write_fd = os.pipe()
    if user == "install":
        args = ["install", "to-disk", "--via-loopback", "--disk-size", "4G",
                "--source-imgref", synthetic.ref("v1"), "--cache-dir", str(cache), str(out)]
        pause_at = {"id": "import", "steps": 0}
    else:
        args = ["image", "unpack", "--cache-dir", str(cache), synthetic.ref("v1"), str(out)]
        pause_at = {"type": "ProgressSteps", "id": "unpack", "steps": 0}
    proc = subprocess.Popen(
        [str(BOOTC_PY), "--progress-fd", str(write_fd), *args], stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, pass_fds=(write_fd,),
        env={**os.environ, "TMPDIR": str(tmp_path)})  # if it must be killed, nothing in /tmp
    os.close(write_fd)
    prune = None
    try:
        with os.fdopen(read_fd) as events:
            seen = []
            for line in events:
                event = json.loads(line)
                seen.append(event)
                if all(event.get(k) == v for k, v in pause_at.items()):
                    proc.send_signal(signal.SIGSTOP)
                    break
            else:
                pytest.fail(f"no progress event {pause_at} among {seen}")
            blobs = sorted((cache / "blobs").rglob("*"))
            assert blobs
            prune = subprocess.Popen([str(BOOTC_PY), "image", "prune", "--all",
                                      "--cache-dir", str(cache)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            time.sleep(3)
            assert prune.poll() is None, f"prune did not wait for the {user}"
            assert sorted((cache / "blobs").rglob("*")) == blobs, "blobs in use were deleted"
            proc.send_signal(signal.SIGCONT)
            for _ in events:  # drain, so the process never blocks on the pipe
                pass
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err.decode()
        _, perr = prune.communicate(timeout=60)
        assert prune.returncode == 0, perr
        assert "waiting for another bootc-py process using the cache" in perr
        assert not [p for p in (cache / "blobs").rglob("*") if p.is_file()]
        if user == "unpack":
            assert "Synthetic OS" in (out / "etc/os-release").read_text()
            assert (out / "var/cache/app/seed").read_text() == "seeded from the image\n"
    finally:
        for p in (proc, prune):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGCONT)
                p.kill()
                p.wait()
