"""Upgrade v1 -> v2 of an installed disk, offline (`--sysroot`, registry on 127.0.0.1), and print
ratios measured in this one run (as root):

  bytes fetched / compressed size of the changed layers      goal 1.00
  upgrade wall time / a cold import of the same image         goal <= 0.2x
  `upgrade --check` wall time                                  goal <= 1 s
  sysroot disk use after 5 upgrades / after the first         goal <= 1.1x

The image (--image):
  synthetic (default): a synthetic bootable base (tests/integration/synthetic.py) plus files in
    the base layer ($BENCH_BASE_FILES x 100 KB, default 600: ~60 MB), and a 1 MB top layer that
    changes with every version. Small: fixed costs (process start, registry round trips) weigh
    more in the ratio than they would with an OS.
  sample: the sample OS image of the VM tests (vm-fixtures/build-image, ~200 MB compressed,
    Debian with kernel and systemd); its variants v1, v2, broken differ in the top layer only.
    The upgrades go v1 -> v2, then broken, v1, v2, broken.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "tests/integration"))
sys.path.insert(0, str(REPO / "vm-fixtures"))

from synthetic import base_tree, build_image, run_cli  # noqa: E402

from bootc_py.disk.loop import LoopDevice  # noqa: E402
from bootc_py.disk.mount import Mount  # noqa: E402
from bootc_py.image.ref import parse_imgref  # noqa: E402
from bootc_py.image.source import PullOptions, pull  # noqa: E402
from bootc_py.store.importer import import_image  # noqa: E402
from bootc_py.store.repo import OstreeRepo  # noqa: E402
from fixture_image.build import build_images  # noqa: E402
from registry_fixture import Registry  # noqa: E402

REPO_NAME = "bench/os"
# The base layer's size in 100 KB files: 600 is ~60 MB; an OS image is nearer 2400+ (~240 MB).
BASE_FILES = int(os.environ.get("BENCH_BASE_FILES", "600"))


def _base(root: Path) -> None:
    base_tree(root)
    rng = random.Random(7)
    for i in range(BASE_FILES):  # 100 KB each, half compressible
        d = root / "usr/share/bench" / f"d{i % 30}"
        d.mkdir(parents=True, exist_ok=True)
        data = rng.randbytes(50_000) + bytes(50_000)
        (d / f"f{i}").write_bytes(data)


def _top(n: int):  # type: ignore[no-untyped-def]
    def fill(root: Path) -> None:
        (root / "usr/share/syn").mkdir(parents=True)
        (root / "usr/share/syn/variant").write_text(f"v{n}\n")
        (root / "usr/share/syn/blob").write_bytes(random.Random(n).randbytes(1 << 20))
    return fill


def _layers(layout: Path, tag: str) -> list[dict[str, object]]:
    index = json.loads((layout / "index.json").read_text())
    desc = next(m for m in index["manifests"]
                if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag)
    manifest = json.loads((layout / "blobs/sha256" / desc["digest"].split(":")[1]).read_text())
    layers: list[dict[str, object]] = manifest["layers"]
    return layers


def _cpu() -> float:
    """CPU seconds of this process and its waited-for children: less sensitive than wall time
    to a machine other work keeps busy."""
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + kids.ru_utime + kids.ru_stime


def _used(path: Path) -> int:
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


# BENCH_PROFILE=DIR: the timed verbs run with -vv and their step/run log goes to DIR (each
# run() logs its program's wall time), to see where the time goes.
PROFILE = os.environ.get("BENCH_PROFILE")


def _cli(*args: str, name: str | None = None) -> str:
    argv = ("-vv", *args) if PROFILE and name else args
    res = run_cli(*argv)
    if res.returncode != 0:
        raise SystemExit(f"bootc-py {' '.join(args)} failed: {res.stderr}")
    if PROFILE and name:
        Path(PROFILE).mkdir(parents=True, exist_ok=True)
        (Path(PROFILE) / f"{name}.log").write_text(res.stderr)
    return res.stdout


def _build(kind: str, layout: Path, work: Path) -> list[str]:
    """Build the versions into one layout; return their tags, the installed one first."""
    if kind == "sample":
        build_images(["v1", "v2", "broken"], layout)
        return ["v1", "v2", "broken", "v1", "v2", "broken"]
    for n in range(1, 7):
        build_image(layout, f"v{n}", [_base, _top(n)], work=work / "build")
    return [f"v{n}" for n in range(1, 7)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--image", choices=("synthetic", "sample"), default="synthetic")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bootc-py-bench-upgrade-", dir="/var/tmp") as tmp:
        work = Path(tmp)
        layout = work / "oci"
        tags = _build(args.image, layout, work)
        with ExitStack() as stack:
            reg = stack.enter_context(Registry(work / "registry"))
            conf = work / "registries.conf"
            conf.write_text(f'[[registry]]\nlocation = "{reg.host}"\ninsecure = true\n')
            os.environ["CONTAINERS_REGISTRIES_CONF"] = str(conf)
            reg.push(layout, tags[0], f"{REPO_NAME}:latest")
            ref = f"docker://{reg.host}/{REPO_NAME}:latest"
            disk = work / "disk.raw"
            size = "6G" if args.image == "sample" else "3G"
            _cli("install", "to-disk", "--via-loopback", "--disk-size", size,
                 "--source-imgref", ref, "--cache-dir", str(work / "cache"), str(disk))
            # A cold import of v2 into an empty repository, for comparison.
            reg.push(layout, tags[1], f"{REPO_NAME}:latest")
            cold_repo = OstreeRepo(work / "cold-repo")
            cold_repo.init()
            image = pull(parse_imgref(ref), PullOptions(cache_dir=work / "cold-cache",
                                                        tls_verify=False))
            t0, c0 = time.monotonic(), _cpu()
            import_image(cold_repo, image, ref)
            cold_import, cold_cpu = time.monotonic() - t0, _cpu() - c0

            loop = stack.enter_context(LoopDevice(disk))
            mnt = work / "mnt"
            stack.enter_context(Mount(loop.partition(4), mnt))
            stack.enter_context(Mount(loop.partition(3), mnt / "boot"))
            t0 = time.monotonic()
            _cli("upgrade", "--check", "--sysroot", str(mnt))
            check_cold = time.monotonic() - t0  # right after mounting: cold page cache
            t0, c0 = time.monotonic(), _cpu()
            _cli("upgrade", "--check", "--sysroot", str(mnt), name="check")
            check_time, check_cpu = time.monotonic() - t0, _cpu() - c0
            t0, c0 = time.monotonic(), _cpu()
            out = json.loads(_cli("upgrade", "--json", "--sysroot", str(mnt),
                                  name="upgrade"))
            upgrade_time, upgrade_cpu = time.monotonic() - t0, _cpu() - c0
            changed = sum(int(str(x["size"])) for x in _layers(layout, tags[1])[-1:])
            used_first = _used(mnt)
            for tag in tags[2:]:
                reg.push(layout, tag, f"{REPO_NAME}:latest")
                _cli("upgrade", "--sysroot", str(mnt))
            used_fifth = _used(mnt)
        print(f"bytes fetched / changed layers' compressed size: "
              f"{out['bytesFetched']} / {changed} = {out['bytesFetched'] / changed:.2f} "
              "(goal 1.00)")
        print(f"upgrade wall time / cold import of the same image: {upgrade_time:.2f} s / "
              f"{cold_import:.2f} s = {upgrade_time / cold_import:.2f}x (goal <= 0.2x); "
              f"in CPU time {upgrade_cpu:.2f} s / {cold_cpu:.2f} s = "
              f"{upgrade_cpu / cold_cpu:.2f}x")
        print(f"upgrade --check wall time: {check_time:.2f} s (goal <= 1 s; the first, on a "
              f"cold page cache right after mounting: {check_cold:.2f} s); CPU time "
              f"{check_cpu:.2f} s")
        print(f"load average during the run: {os.getloadavg()[0]:.1f} "
              f"({os.cpu_count()} CPUs)")
        print(f"sysroot use after 5 upgrades / after the first: {used_fifth >> 20} MiB / "
              f"{used_first >> 20} MiB = {used_fifth / used_first:.2f}x (goal <= 1.1x)")
        subprocess.run(["sync"], check=False)


if __name__ == "__main__":
    main()
