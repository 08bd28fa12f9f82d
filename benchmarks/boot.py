#!/usr/bin/env python3
"""Benchmark: cold boots of an installed sample disk to the guest's check line, by phase.

    .venv/bin/python benchmarks/boot.py [--boots 3] [--firmware uefi --firmware bios]
        [--cpus 2] [--memory 2048] [--bus virtio-blk|virtio-scsi] [--cache unsafe]
        [--critical-chain]

`--boots 3` (the default) takes about 5 minutes on a quiet 2-core machine: one install and
3 boots per firmware of ~40 s each. The qemu options measure the harness's levers
(vm-fixtures/README.md, "Boot time"); the defaults are the harness's.

Builds the sample image v1 (from the fixture cache), installs it once with bootc-py
(`install to-disk --via-loopback`: GRUB for BIOS and UEFI), then boots it cold `--runs` times
per firmware, each boot on a fresh qcow2 overlay (first boot every time). Prints the median
of each phase and the goal (<= 30 s median from qemu start to the check line):

  firmware+loader  qemu start -> kernel start (the report's arrival minus the guest's uptime),
                   split at GRUB's "Booting `...'" line on the serial console into
    firmware       qemu start -> GRUB has read its config and chosen the entry
    loader         -> kernel start: GRUB reading the kernel and the initramfs, the EFI stub
  kernel / initrd / userspace   the guest's `systemd-analyze time`
  report           userspace done -> the check line (the check unit collecting its facts)
  qemu cpu         qemu's own CPU seconds for the whole boot, power-off included: the work,
                   which the host's steal time (large on a shared VM) does not inflate

`--critical-chain` prints the guest's `systemd-analyze critical-chain` and `blame` of each
boot (they run before the facts are collected, so "report" grows by their cost).

Run as root; the machine's other load shows in the figures (the load average is printed at
the start and the end): compare runs of one invocation.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "vm-fixtures"))
BOOTC_PY = Path(sys.executable).parent / "bootc-py"
GOAL_S = 30.0
PHASES = ("firmware", "loader", "firmware+loader", "kernel", "initrd", "userspace", "report",
          "to check line", "qemu cpu")
GRUB_BOOTING = re.compile(r"Booting `")
ANALYZE_SCRIPT = ("systemd-analyze critical-chain --no-pager\n"
                  "systemd-analyze blame --no-pager | head -20\n")

from vmharness import VM, Drive  # noqa: E402
from vmharness.qemu import default_cpu_model  # noqa: E402
from vmharness.samples import build_samples  # noqa: E402

ANALYZE = re.compile(r"([\d.]+)(min|s|ms) \((kernel|initrd|userspace)\)")


def seconds(value: str, unit: str) -> float:
    return float(value) * {"min": 60.0, "s": 1.0, "ms": 0.001}[unit]


def phases(facts: dict[str, Any], grub_at: float) -> dict[str, float]:
    """The boot's phases in seconds, from the check report and the moment (seconds after qemu
    started) GRUB announced the entry it boots."""
    line = " ".join(facts.get("boot_timing") or [])
    found = {m[3]: seconds(m[1], m[2]) for m in ANALYZE.finditer(line)}
    if set(found) != {"kernel", "initrd", "userspace"}:
        raise SystemExit(f"cannot read systemd-analyze's line: {line!r}")
    to_report = float(facts["harness"]["seconds_to_report"])
    uptime_at_report = float(facts.get("check_timing", {}).get("collected", facts["uptime_s"]))
    booted = sum(found.values())
    kernel_at = to_report - uptime_at_report
    return {"firmware": grub_at, "loader": kernel_at - grub_at, "firmware+loader": kernel_at,
            **found,
            "report": uptime_at_report - booted, "to check line": to_report}


def cpu_s() -> float:
    """CPU seconds (user + system) of the children reaped so far."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed_boot(drive: Drive, **vm_args: Any) -> tuple[dict[str, Any], float, float]:
    """One cold boot to the check report (the guest powers off after it); also returns when
    GRUB's "Booting `...'" line appeared on the serial console, and qemu's CPU seconds (which
    the host's steal time, large on a shared VM, does not inflate as it does the wall time)."""
    before = cpu_s()
    with VM(drives=[drive], poweroff_after_check=True, **vm_args) as vm:
        vm.wait_for(GRUB_BOOTING, timeout=600, what="GRUB booting an entry")
        grub_at = vm.elapsed
        facts = vm.check()
        vm.wait_exit(180)
    return facts, grub_at, cpu_s() - before


def install(work: Path) -> Path:
    images = build_samples(work / "oci", ("v1",))
    disk = work / "grub.raw"
    subprocess.run([str(BOOTC_PY), "install", "to-disk", "--via-loopback",
                    "--source-imgref", images.ref("v1"), "--karg=console=ttyS0,115200n8",
                    str(disk)], check=True, stdout=subprocess.DEVNULL)
    return disk


def _label(fw: str, model: str, models: list[str]) -> str:
    """The row's name: the firmware, and the CPU model when several are compared."""
    return f"{fw} -cpu {model}" if len(models) > 1 else fw


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--boots", "--runs", dest="boots", type=int, default=3,
                    help="cold boots per firmware (default 3)")
    ap.add_argument("--firmware", action="append", choices=("uefi", "bios"))
    ap.add_argument("--cpus", type=int, default=2, help="qemu -smp (default 2)")
    ap.add_argument("--cpu-model", action="append", dest="cpu_models",
                    help="qemu -cpu (repeatable: the models' boots are interleaved; default: the"
                         " harness's)")
    ap.add_argument("--memory", type=int, default=2048, help="qemu -m in MiB (default 2048)")
    ap.add_argument("--bus", choices=("virtio-blk", "virtio-scsi"), default="virtio-blk")
    ap.add_argument("--cache", default="unsafe", help="qemu -drive cache= (default unsafe)")
    ap.add_argument("--critical-chain", action="store_true",
                    help="print the guest's systemd-analyze critical-chain and blame")
    args = ap.parse_args()
    print("load average at start: " + " ".join(f"{x:.1f}" for x in os.getloadavg()))
    firmwares = args.firmware or ["uefi", "bios"]
    models = args.cpu_models or [default_cpu_model()]
    kinds = [(fw, m) for fw in firmwares for m in models]
    with tempfile.TemporaryDirectory(prefix="bootc-py-boot-bench-") as tmp:
        work = Path(tmp)
        base = install(work)
        results: dict[tuple[str, str], list[dict[str, float]]] = {k: [] for k in kinds}
        for run in range(args.boots):
            for fw, model in kinds:  # interleaved: the machine's load hits all alike
                label = _label(fw, model, models)
                tag = f"{fw}-{model}-{run}"
                disk = work / f"{tag}.qcow2"
                subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b",
                                str(base), str(disk)], check=True)
                facts, grub_at, qemu_cpu = timed_boot(
                    Drive(disk, bus=args.bus, cache=args.cache), firmware=fw, cpus=args.cpus,
                    cpu_model=model, memory_mb=args.memory, workdir=work / f"vm-{tag}",
                    name=f"bench-{tag}",
                    script=ANALYZE_SCRIPT if args.critical_chain else None)
                if facts.get("failed_units"):
                    raise SystemExit(f"{label} boot {run}: failed units {facts['failed_units']}")
                results[(fw, model)].append({**phases(facts, grub_at), "qemu cpu": qemu_cpu})
                print(f"{label} run {run + 1}: " + "  ".join(
                    f"{k} {v:.1f}" for k, v in results[(fw, model)][-1].items()), flush=True)
                if args.critical_chain:
                    print((facts.get("script") or {}).get("stdout", ""), flush=True)
    print("load average at the end: " + " ".join(f"{x:.1f}" for x in os.getloadavg()))
    print(f"\nmedian of {args.boots} cold boots (s):  " + "  ".join(f"{p:>15}" for p in PHASES))
    ok = True
    for (fw, model), runs in results.items():
        label = _label(fw, model, models)
        med = {p: statistics.median(r[p] for r in runs) for p in PHASES}
        print(f"{label:>28}:  " + "  ".join(f"{med[p]:15.1f}" for p in PHASES))
        ok &= med["to check line"] <= GOAL_S
    print(f"goal: <= {GOAL_S:.0f} s median to the check line: {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
