"""Fleet rollout through FleetLock: many agent processes, one group with a few slots.

Each agent is its own process running bootc-py's real fleet_lock strategy and FleetLock client
(HTTP to the protocol-exact test server on 127.0.0.1): report_steady at start, then staging's
fetch (the updater's own `pull` of the sample v2 from a docker-registry on 127.0.0.1 into the
host's own blob cache, skipping the layers a v1 host already holds, as `upgrade` does), then
may_reboot until granted (honouring retry_after, capped for the benchmark), a fake reboot step
(a sleep), then report_steady after the "green boot". Prints the peak number of hosts
rebooting at once (from the agents' own timestamps and from the server's holder count: never
above the slots), the rollout's total time, and registry bytes per host against the compressed
size of the layers v2 changed (goal: ratio 1.00 plus manifest and config).

    sudo .venv/bin/python benchmarks/fleet.py --hosts 200 --slots 5 --reboot-seconds 0.5
(root: the sample images come from the vm-fixtures cache.)
"""

from __future__ import annotations

import argparse
import multiprocessing
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "vm-fixtures"))

from bootc_py.image.ref import parse_imgref  # noqa: E402
from bootc_py.image.source import PullOptions, pull  # noqa: E402
from bootc_py.update.fleetlock import Backoff, FleetLockClient  # noqa: E402
from bootc_py.update.strategy.fleet_lock import FleetLock  # noqa: E402
from fleetlock_server import FleetLockServer  # noqa: E402
from registry_fixture import Registry  # noqa: E402
from vmharness.samples import build_samples  # noqa: E402

GROUP = "fleet"
Row = tuple[int, float, float, int, int]


def agent(index: int, base_url: str, imgref: str, have: frozenset[str], work: Path,
          reboot_seconds: float, max_wait: float, out: multiprocessing.Queue[Row]) -> None:
    client = FleetLockClient(base_url, GROUP, f"host-{index:04d}", timeout=30)
    strategy = FleetLock(client, backoff=Backoff(initial=0.05, cap=max_wait),
                         retry_backoff=Backoff(initial=0.05, cap=max_wait))
    strategy.report_steady()
    # Staging's fetch: only the layers this (v1) host does not hold yet.
    image = pull(parse_imgref(imgref), PullOptions(cache_dir=work / f"host-{index:04d}",
                                                   tls_verify=False, jobs=1),
                 skip=lambda layer: layer.digest in have)
    refused = 0
    while True:
        decision = strategy.may_reboot(datetime.now(UTC))
        if decision.allowed:
            break
        refused += 1
        wait = decision.retry_after.total_seconds() if decision.retry_after else max_wait
        time.sleep(min(wait, max_wait))
    locked = time.monotonic()
    time.sleep(reboot_seconds)  # the fake reboot: the host is down while it holds the slot
    released = time.monotonic()
    out.put((index, locked, released, refused, image.fetched))  # before the unlock
    strategy.report_steady()


def peak_overlap(spans: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans],
                    key=lambda ev: (ev[0], ev[1]))
    now = peak = 0
    for _, delta in events:
        now += delta
        peak = max(peak, now)
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hosts", type=int, default=200)
    parser.add_argument("--slots", type=int, default=5)
    parser.add_argument("--reboot-seconds", type=float, default=0.5)
    parser.add_argument("--max-wait", type=float, default=1.0,
                        help="cap on the backoff between lock attempts (seconds)")
    args = parser.parse_args()
    ctx = multiprocessing.get_context("fork")
    results: multiprocessing.Queue[Row] = ctx.Queue()
    work = Path(tempfile.mkdtemp(prefix="bootc-py-fleet-"))
    samples = build_samples(work / "oci")
    have = frozenset(samples.layer_digests("v1"))
    changed = [(layer["digest"], int(layer["size"]))
               for layer in samples.manifest("v2")["layers"] if layer["digest"] not in have]
    changed_bytes = sum(size for _, size in changed)
    with Registry(work / "registry") as reg, \
            FleetLockServer(slots={GROUP: args.slots}) as server:
        imgref = f"docker://{reg.host}/fleet:stable"
        samples.push("v2", f"{reg.host}/fleet:stable")
        start = time.monotonic()
        procs = [ctx.Process(target=agent, args=(i, server.base_url, imgref, have, work / "hosts",
                                                 args.reboot_seconds, args.max_wait, results))
                 for i in range(args.hosts)]
        for proc in procs:
            proc.start()
        rows = [results.get(timeout=600) for _ in procs]
        for proc in procs:
            proc.join(timeout=60)
        total = time.monotonic() - start
        failed = [p for p in procs if p.exitcode != 0]
        server_peak = server.peak.get(GROUP, 0)
        requests = len(server.requests)
        left = server.holders(GROUP)
    shutil.rmtree(work, ignore_errors=True)
    peak = peak_overlap([(lock, rel) for _, lock, rel, _, _ in rows])
    fetched = [row[4] for row in rows]
    ideal = args.hosts / args.slots * args.reboot_seconds
    print(f"hosts={args.hosts} slots={args.slots} reboot={args.reboot_seconds}s")
    print(f"peak rebooting at once: {peak} (agents' timestamps), {server_peak} (server holders)")
    print(f"rollout: {total:.1f}s total, ideal {ideal:.1f}s -> ratio {total / ideal:.2f}")
    print(f"requests: {requests} ({requests / args.hosts:.1f} per host), "
          f"refusals {sum(r[3] for r in rows)}, slots left held: {len(left)}, "
          f"failed agents: {len(failed)}")
    print(f"registry bytes per host: {sum(fetched) / len(fetched):.0f} (min {min(fetched)}, "
          f"max {max(fetched)}); changed layers {len(changed)}, {changed_bytes} bytes "
          f"compressed -> ratio {sum(fetched) / len(fetched) / changed_bytes:.3f}")
    if peak > args.slots or server_peak > args.slots or failed or left:
        raise SystemExit("FAIL: the fleet exceeded its slots, an agent failed, or a slot leaked")


if __name__ == "__main__":
    main()
