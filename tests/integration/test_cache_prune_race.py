"""`image prune --all` while another process uses cached blobs waits for it, deleting nothing
that is in use: every process holding a pulled image keeps a shared lock on the cache."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from synthetic import BOOTC_PY, SyntheticImages


def test_prune_all_waits_for_an_install_using_the_cache(synthetic: SyntheticImages,
                                                       tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    disk = tmp_path / "disk.raw"
    read_fd, write_fd = os.pipe()
    install = subprocess.Popen(
        [str(BOOTC_PY), "--progress-fd", str(write_fd), "install", "to-disk", "--via-loopback",
         "--disk-size", "4G", "--source-imgref", synthetic.ref("v1"), "--cache-dir", str(cache),
         str(disk)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, pass_fds=(write_fd,),
        env={**os.environ, "TMPDIR": str(tmp_path)})  # if it must be killed, nothing in /tmp
    os.close(write_fd)
    prune = None
    try:
        with os.fdopen(read_fd) as events:
            for line in events:  # pause the install as it starts reading the layers
                event = json.loads(line)
                if event.get("id") == "import" and event.get("steps") == 0:
                    install.send_signal(signal.SIGSTOP)
                    break
            blobs = sorted((cache / "blobs").rglob("*"))
            assert blobs
            prune = subprocess.Popen([str(BOOTC_PY), "image", "prune", "--all",
                                      "--cache-dir", str(cache)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            time.sleep(3)
            assert prune.poll() is None, "prune did not wait for the install"
            assert sorted((cache / "blobs").rglob("*")) == blobs, "blobs in use were deleted"
            install.send_signal(signal.SIGCONT)
            for _ in events:  # drain, so the install never blocks on the pipe
                pass
        _, err = install.communicate(timeout=600)
        assert install.returncode == 0, err.decode()
        _, perr = prune.communicate(timeout=60)
        assert prune.returncode == 0, perr
        assert "waiting for another bootc-py process using the cache" in perr
        assert not [p for p in (cache / "blobs").rglob("*") if p.is_file()]
    finally:
        for proc in (install, prune):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
                proc.wait()
