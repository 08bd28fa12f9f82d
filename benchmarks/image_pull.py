"""Benchmark: pull a ~400 MB multi-layer image from a local docker-registry.

    .venv/bin/python benchmarks/image_pull.py [--runs 3]

bootc-py `image pull` (fresh cache each run) against `skopeo copy docker://... oci:...` (fresh
layout each run), both from the same registry on 127.0.0.1; prints the median wall times, their
ratio (goal <= 1.0) and bootc-py's peak RSS (goal <= 150 MB).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from image_bench_common import BOOTC_PY, TAG, WORK, drop, ensure_image, image_size, median, timed

from registry_fixture import Registry


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    layout = ensure_image()
    size, n_layers = image_size()
    with tempfile.TemporaryDirectory(dir=WORK) as tmp, Registry(Path(tmp) / "registry") as reg:
        ref = reg.push(layout, TAG, "bench/os:1")
        skopeo, ours = [], []
        for i in range(args.runs):
            out = Path(tmp) / f"skopeo-{i}"
            skopeo.append(timed(["skopeo", "copy", "--quiet", "--src-tls-verify=false", ref,
                                 f"oci:{out}:x"]))
            drop(out)
            cache = Path(tmp) / f"cache-{i}"
            ours.append(timed([str(BOOTC_PY), "image", "pull", "--tls-verify=false",
                               "--cache-dir", str(cache), ref]))
            again = timed([str(BOOTC_PY), "image", "pull", "--tls-verify=false",
                           "--cache-dir", str(cache), ref])
            drop(cache)
        s, o = median(skopeo), median(ours)
    print(f"image: {size / 1e6:.0f} MB compressed in {n_layers} layers, local registry")
    print(f"skopeo copy docker:// oci:    {s.seconds:6.2f} s   peak RSS {s.max_rss_mb:5.0f} MB")
    print(f"bootc-py image pull           {o.seconds:6.2f} s   peak RSS {o.max_rss_mb:5.0f} MB")
    print(f"bootc-py second pull (cached) {again.seconds:6.2f} s   (re-verifies every blob)")
    print(f"ratio bootc-py / skopeo: {o.seconds / s.seconds:.2f}x (goal <= 1.0); "
          f"peak RSS {o.max_rss_mb:.0f} MB (goal <= 150)")
    if o.max_rss_mb > 150:
        sys.exit(1)


if __name__ == "__main__":
    main()
