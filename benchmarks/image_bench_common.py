"""Shared by the image benchmarks: a ~400 MB (compressed) multi-layer image shaped like an OS
image (many small files, some big random and compressible ones, links, whiteouts), generated
deterministically once into an OCI layout, and helpers to time commands and read peak RSS."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

WORK = Path(os.environ.get("BOOTC_PY_BENCH_DIR", "/var/tmp/bootc-py-bench"))
LAYOUT = WORK / "oci"
TAG = "bench"
BOOTC_PY = Path(sys.executable).parent / "bootc-py"
MTIME = 1_700_000_000
WORDS = [
    b"lorem", b"ipsum", b"dolor", b"sit", b"amet", b"consectetur", b"adipiscing", b"elit", b"sed",
    b"do", b"eiusmod", b"tempor", b"incididunt", b"ut", b"labore", b"et", b"dolore", b"magna",
    b"aliqua", b"usr", b"lib", b"bin", b"share", b"doc", b"locale", b"python3", b"systemd",
    b"kernel", b"module", b"firmware", b"config", b"etc", b"var",
]


class _HashingWriter(io.RawIOBase):
    """Hash what is written (the uncompressed tar: diff_id) and pass it on."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.h = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        self.h.update(b)
        self.out.write(b)
        return len(b)


def _text(rng: random.Random, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        out += b" ".join(rng.choices(WORDS, k=256)) + b"\n"
    return bytes(out[:n])


def _content(rng: random.Random, n: int, random_share: float) -> bytes:
    k = int(n * random_share)
    return rng.randbytes(k) + _text(rng, n - k)


def _add(tf: tarfile.TarFile, name: str, kind: bytes, data: bytes = b"", mode: int = 0o644,
         link: str = "") -> None:
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode, ti.mtime, ti.linkname = kind, mode, MTIME, link
    ti.size = len(data) if kind == tarfile.REGTYPE else 0
    tf.addfile(ti, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def _layer(path: Path, fill: Any) -> dict[str, Any]:
    with open(path, "wb") as raw:
        gz = gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0)
        hw = _HashingWriter(gz)  # type: ignore[arg-type]
        with tarfile.open(fileobj=hw, mode="w|", format=tarfile.PAX_FORMAT) as tf:
            fill(tf)
        gz.close()
    digest = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    final = LAYOUT / "blobs/sha256" / digest[7:]
    path.rename(final)
    return {"digest": digest, "size": final.stat().st_size, "diff_id": "sha256:" +
            hw.h.hexdigest()}


def _os_layer(tf: tarfile.TarFile) -> None:
    rng = random.Random(1)
    dirs = [f"usr/lib/pkg{i:03d}" for i in range(400)] + [f"usr/share/doc/d{i:03d}"
                                                           for i in range(100)]
    made: set[str] = set()
    for d in dirs:
        parts = d.split("/")
        for i in range(1, len(parts) + 1):
            p = "/".join(parts[:i])
            if p not in made:
                made.add(p)
                _add(tf, p, tarfile.DIRTYPE, mode=0o755)
    files = []
    for i in range(20000):
        d = rng.choice(dirs)
        size = min(int(rng.lognormvariate(8.2, 1.6)), 2 << 20)
        name = f"{d}/file{i:05d}.so" if i % 3 else f"{d}/file{i:05d}.txt"
        _add(tf, name, tarfile.REGTYPE, _content(rng, size, 0.6 if i % 3 else 0.05))
        files.append(name)
    for i in range(2000):
        _add(tf, f"usr/lib/pkg{i % 400:03d}/link{i}", tarfile.SYMTYPE, mode=0o777,
             link=os.path.basename(rng.choice(files)))
    for i in range(300):
        _add(tf, f"usr/share/doc/d{i % 100:03d}/hard{i}", tarfile.LNKTYPE,
             link=files[i * 7])


def _apps_layer(tf: tarfile.TarFile) -> None:
    rng = random.Random(2)
    _add(tf, "opt", tarfile.DIRTYPE, mode=0o755)
    for i in range(8):
        _add(tf, f"opt/blob{i}.bin", tarfile.REGTYPE, rng.randbytes(16 << 20))


def _data_layer(tf: tarfile.TarFile) -> None:
    rng = random.Random(3)
    _add(tf, "srv", tarfile.DIRTYPE, mode=0o755)
    for i in range(4):
        _add(tf, f"srv/data{i}.txt", tarfile.REGTYPE, _text(rng, 25 << 20))


def _update_layer(seed: int) -> Any:
    def fill(tf: tarfile.TarFile) -> None:
        rng = random.Random(seed)
        _add(tf, "usr", tarfile.DIRTYPE, mode=0o755)
        _add(tf, "usr/lib", tarfile.DIRTYPE, mode=0o755)
        for i in range(50):
            _add(tf, f"usr/lib/pkg{i:03d}/.wh.file{i:05d}.so", tarfile.REGTYPE)
        _add(tf, f"usr/lib/new{seed}", tarfile.DIRTYPE, mode=0o755)
        for i in range(1500):
            _add(tf, f"usr/lib/new{seed}/f{i}", tarfile.REGTYPE,
                 _content(rng, int(rng.lognormvariate(8, 1.5)) % (1 << 20), 0.7))
        _add(tf, f"usr/lib/new{seed}/big.bin", tarfile.REGTYPE, rng.randbytes(24 << 20))
    return fill


def ensure_image() -> Path:
    """Generate the benchmark image once (a few minutes); later runs reuse it."""
    if (LAYOUT / "index.json").is_file():
        return LAYOUT
    shutil.rmtree(LAYOUT, ignore_errors=True)
    (LAYOUT / "blobs/sha256").mkdir(parents=True)
    (LAYOUT / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    print("generating the benchmark image (once)...", file=sys.stderr)
    layers = [_layer(LAYOUT / f"tmp{i}", fill) for i, fill in enumerate(
        [_os_layer, _apps_layer, _data_layer, _update_layer(4), _update_layer(5)])]
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {
        "Labels": {"containers.bootc": "1"}}, "rootfs": {
        "type": "layers", "diff_ids": [x["diff_id"] for x in layers]}}).encode()
    cdig = "sha256:" + hashlib.sha256(config).hexdigest()
    (LAYOUT / "blobs/sha256" / cdig[7:]).write_bytes(config)
    manifest = json.dumps({"schemaVersion": 2,
                           "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": cdig, "size": len(config)},
                           "layers": [{"mediaType":
                                       "application/vnd.oci.image.layer.v1.tar+gzip",
                                       "digest": x["digest"], "size": x["size"]}
                                      for x in layers]}).encode()
    mdig = "sha256:" + hashlib.sha256(manifest).hexdigest()
    (LAYOUT / "blobs/sha256" / mdig[7:]).write_bytes(manifest)
    (LAYOUT / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": mdig,
        "size": len(manifest), "annotations": {"org.opencontainers.image.ref.name": TAG}}]}))
    return LAYOUT


def image_size() -> tuple[int, int]:
    """(compressed bytes of all layers, number of layers)"""
    index = json.loads((LAYOUT / "index.json").read_text())
    digest = index["manifests"][0]["digest"]
    manifest = json.loads((LAYOUT / "blobs/sha256" / digest[7:]).read_text())
    return sum(x["size"] for x in manifest["layers"]), len(manifest["layers"])


@dataclass(frozen=True)
class Run:
    seconds: float
    max_rss_mb: float


def _vm_hwm_kib(pid: int) -> int | None:
    """The peak resident set of `pid`'s current program (VmHWM, reset by exec), in KiB."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def timed(argv: list[str], env: dict[str, str] | None = None) -> Run:
    """Run a command to completion; wall time and the peak RSS of that command alone.

    Not wait4's ru_maxrss: Linux carries the high-water mark across exec, so a child forked
    from this (large) benchmark process starts with our peak, and every command then showed
    the same figure. VmHWM of the exec'd program, sampled until it exits, is its own peak.
    """
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, **(env or {})})
    assert proc.stderr is not None
    errors: list[bytes] = []
    reader = threading.Thread(target=lambda: errors.append(proc.stderr.read()), daemon=True)
    reader.start()
    peak_kib = 0
    status = None
    while status is None:
        hwm = _vm_hwm_kib(proc.pid)      # read before reaping: after it, /proc/pid is gone
        if hwm is not None:
            peak_kib = max(peak_kib, hwm)
        pid, raw = os.waitpid(proc.pid, os.WNOHANG)
        if pid:
            status = raw
        else:
            time.sleep(0.02)
    elapsed = time.monotonic() - t0
    reader.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        err = b"".join(errors).decode(errors="replace")
        raise SystemExit(f"{argv[0]} failed ({proc.returncode}): {err[-2000:]}")
    return Run(elapsed, peak_kib / 1024)


def median(runs: list[Run]) -> Run:
    s = sorted(runs, key=lambda r: r.seconds)
    return Run(s[len(s) // 2].seconds, max(r.max_rss_mb for r in runs))


def drop(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    subprocess.run(["sync"], check=False)
