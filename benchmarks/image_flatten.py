"""Benchmark: flatten the ~400 MB multi-layer image into a directory.

    .venv/bin/python benchmarks/image_flatten.py [--runs 3]

bootc-py `image unpack` (blobs already in its cache, which it re-verifies) against
`umoci raw unpack` of the same OCI layout (umoci also verifies digests and diff_ids); prints
the median wall times, their ratio (goal <= 1.0) and bootc-py's peak RSS (goal <= 150 MB).
Outputs are removed only at the end: ext4 makes inode allocation slow for a few minutes after
mass deletions (it skips recently deleted inodes), which would penalize whichever tool runs
next.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from image_bench_common import BOOTC_PY, TAG, WORK, drop, ensure_image, image_size, median, timed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    layout = ensure_image()
    size, n_layers = image_size()
    with tempfile.TemporaryDirectory(dir=WORK) as tmp:
        cache = Path(tmp) / "cache"
        ref = f"oci:{layout}:{TAG}"
        timed([str(BOOTC_PY), "image", "pull", "--cache-dir", str(cache), ref])
        umoci, ours = [], []
        for i in range(args.runs):
            out = Path(tmp) / f"umoci-{i}"
            umoci.append(timed(["umoci", "raw", "unpack", "--image", f"{layout}:{TAG}",
                                str(out)]))
            out = Path(tmp) / f"ours-{i}"
            ours.append(timed([str(BOOTC_PY), "image", "unpack", "--cache-dir", str(cache),
                               ref, str(out)]))
        u, o = median(umoci), median(ours)
        drop(Path(tmp))
    print(f"image: {size / 1e6:.0f} MB compressed in {n_layers} layers")
    print(f"umoci raw unpack        {u.seconds:6.2f} s   peak RSS {u.max_rss_mb:5.0f} MB")
    print(f"bootc-py image unpack   {o.seconds:6.2f} s   peak RSS {o.max_rss_mb:5.0f} MB")
    print(f"ratio bootc-py / umoci: {o.seconds / u.seconds:.2f}x (goal <= 1.0); "
          f"peak RSS {o.max_rss_mb:.0f} MB (goal <= 150)")
    if o.max_rss_mb > 150:
        sys.exit(1)


if __name__ == "__main__":
    main()
