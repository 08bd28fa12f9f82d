"""An upgrade survives a power cut at any moment, and a disk that fills up mid-import.

The v1 sample is installed (`installed_disk`) following `10.0.2.100:5000/bootc-py-fixture:stable`;
v2 is pushed there (a docker-registry on the host's 127.0.0.1, reached through the relay of
vmharness GuestForward). The power is cut with SIGKILL to qemu (`VM.power_cut`) at moments read
from the guest, never after a sleep: the step line `bootc-py upgrade` prints as it starts
assembling the OS tree (the import) or staging the deployment, and systemd's line as it stops
ostree-finalize-staged at shutdown. What the guest wrote and did not flush may be lost, as on
real hardware; to make that loss as bad as a real one, a background loop fsyncs an unrelated
file twice a second while `upgrade` runs (as journald or a database would): every fsync on
XFS commits the filesystem's whole metadata log (names, sizes 0), not the other files' data.

Everything the test itself needs to survive a cut (the guest's network and registries.conf.d)
is written and `sync`ed before any cut: written in the same boot and not synced, it is lost,
which is why the first attempt's guest had no network after the cut (the boot after the cut
reports a canary written, unsynced, just before the first cut).

One test, one disk, 4 or 5 cold boots (each ~60-120 s under TCG on the shared machine):
    1 v1: network + registry config (synced); disk full during import (a file in /var leaves
      the space precheck room, not the import): one-line error, partial objects removed, free
      space as before; then `upgrade`, power cut while it assembles the OS tree
    2 v1 whole (one deployment, nothing staged, no empty metadata object); `upgrade`, power
      cut while it stages the deployment
    3 v1 whole; `upgrade` succeeds (v2 staged); power-off, power cut when systemd stops
      ostree-finalize-staged
    4 v1 or v2, whole (`ostree fsck`, deployments); if v1, `upgrade` again
   (5 only if boot 4 was v1: v2 booted)
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from registry_fixture import Registry
from vmharness import VM, Drive, GuestForward
from vmharness.samples import SampleImages

GUEST_REGISTRY = "10.0.2.100:5000"
REPO = "bootc-py-fixture"
STABLE = f"{GUEST_REGISTRY}/{REPO}:stable"
BOOT_TIMEOUT = 600
STATE_MARKER = "BOOTC-PY-STATE"
# Left free for the disk-full run: far more than the precheck asks for the tiny v2 top layer
# (3x its compressed size), far less than assembling the OS tree (a hardlinked checkout of
# the whole image: thousands of directories) takes.
DISK_FULL_MARGIN = 512 << 10

PRELUDE = r"""set -e
section() { echo "=== $1"; }
avail() { df -B1 --output=avail /sysroot | tail -n 1 | tr -d ' '; }
wait_network() {
    for i in $(seq 120); do ip -4 -o addr show scope global | grep -q . && return 0; sleep 1; done
    echo "no network after 120 s" >&2; return 1
}
# One JSON line on the console and the check port: what the guest says of itself now.
state() {
    modprobe virtio_console 2>/dev/null || true
    for i in $(seq 20); do [ -e /dev/virtio-ports/org.bootc-py.check ] && break; sleep 0.5; done
    python3 - "$1" <<'EOF'
import glob, json, os, subprocess, sys
def sh(*argv):
    r = subprocess.run(argv, capture_output=True, text=True)
    return {"rc": r.returncode, "out": r.stdout[-6000:], "err": r.stderr[-2000:]}
def size(path):
    try:
        return os.stat(path).st_size
    except OSError:
        return None
meta = [p for ext in ("commit", "dirtree", "dirmeta")
        for p in glob.glob(f"/ostree/repo/objects/*/*.{ext}") if os.stat(p).st_size == 0]
state = {
    "name": sys.argv[1],
    "variant": open("/usr/share/bootc-py-fixture/variant").read().strip(),
    "ostree_status": sh("ostree", "admin", "status"),
    "status": sh("bootc-py", "status", "--json"),
    "deploy_dirs": sorted(os.listdir("/ostree/deploy/default/deploy")),
    "repo_tmp": sorted(os.listdir("/ostree/repo/tmp")),
    "refs": sh("ostree", "refs")["out"].split(),
    "empty_metadata_objects": meta,
    "config_sizes": {p: size(p) for p in (
        "/etc/systemd/network/20-bootc-py-test.network",
        "/etc/containers/registries.conf.d/50-bootc-py-test.conf",
        "/etc/bootc-py-test/canary")},
    "loader": os.readlink("/boot/loader"),
    "bls": sorted(os.listdir("/boot/loader/entries")),
    "avail": os.statvfs("/sysroot").f_bavail * os.statvfs("/sysroot").f_frsize,
}
for name in glob.glob("/var/lib/bootc-py-test/*"):
    state.setdefault("files", {})[os.path.basename(name)] = open(name).read()[-3000:]
line = "BOOTC-PY-STATE " + json.dumps(state, sort_keys=True)
for dev in ("/dev/virtio-ports/org.bootc-py.check", "/dev/ttyS0"):
    try:
        with open(dev, "w") as f:
            f.write("\r\n" + line + "\r\n")
    except OSError:
        pass
EOF
}
# As journald or a database would: an fsync twice a second, of a file nobody else reads.
fsync_ticker() {
    ( while :; do dd if=/dev/urandom of=/var/tmp/bootc-py-tick bs=4096 count=1 conv=fsync \
        status=none; sleep 0.5; done ) &
}
"""
# The guest's network and registry config, then `sync`: it must outlive the cuts.
NETWORK = r"""mkdir -p /etc/systemd/network /etc/containers/registries.conf.d /etc/bootc-py-test \
    /var/lib/bootc-py-test
printf '[Match]\nName=en* eth*\n[Network]\nDHCP=ipv4\n' \
    > /etc/systemd/network/20-bootc-py-test.network
printf '[[registry]]\nlocation = "10.0.2.100:5000"\ninsecure = true\n' \
    > /etc/containers/registries.conf.d/50-bootc-py-test.conf
systemctl enable --now systemd-networkd 2>/dev/null
sync
wait_network
"""
# Disk full during import: fill /sysroot's filesystem (a file in /var) to leave MARGIN free.
DISK_FULL = r"""R=/var/lib/bootc-py-test
before=$(avail)
fallocate -l $((before - {margin})) /var/bootc-py-fill
filled=$(avail)
rc=0
bootc-py upgrade >/dev/null 2>$R/diskfull.stderr || rc=$?
failed=$(avail)
rm -f /var/bootc-py-fill
sync
echo "rc=$rc before=$before filled=$filled failed=$failed after=$(avail)" > $R/diskfull
sync
"""
# Written and not synced just before the first cut: does an unsynced write survive it?
CANARY = "echo canary > /etc/bootc-py-test/canary\n"
UPGRADE_TO_CONSOLE = "fsync_ticker\nbootc-py upgrade >/dev/ttyS0 2>&1\n"
IMPORTING = r"==> Assembling the OS tree"
STAGING = r"==> Staging the deployment"
# systemd shortens status lines to the console width in the middle: either end may remain.
FINALIZING = r"Stopping \S*ostree-finalize|Stopping .*Finalize Staged Deployment"


@dataclass
class Chain:
    disk: Path
    work: Path
    registry: Registry
    factory: Callable[..., VM]
    boots: list[tuple[str, float]] = field(default_factory=list)

    def vm(self, name: str, script: str, *, poweroff: bool) -> VM:
        workdir = self.work / f"{len(self.boots) + 1:02d}-{name}"
        return self.factory(drives=[Drive(self.disk)], firmware="uefi", name=name,
                            workdir=workdir, script=PRELUDE + script,
                            poweroff_after_check=poweroff,
                            guest_forwards=[GuestForward(self.registry.port)])

    def cut_at(self, name: str, script: str, pattern: str) -> dict[str, Any]:
        """Boot; the script reports its state, then runs something; cut the power when the
        console shows `pattern`. Returns the state reported before."""
        with self.vm(name, script, poweroff=False) as vm:
            try:
                vm.wait_for(f"{pattern}|BOOTC-PY-CHECK", BOOT_TIMEOUT, f"/{pattern}/")
                assert "BOOTC-PY-CHECK" not in vm.serial_text(), \
                    f"{name}: the script ended before /{pattern}/:\n{vm.serial_tail(60)}"
                vm.power_cut()
            finally:
                self.boots.append((name, round(vm.elapsed, 1)))
            return state_of(vm, name)

    def boot(self, name: str, script: str, *, cut: str | None = None
             ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Boot to the check report (the script's state line first); the guest powers off,
        or, with `cut`, loses power when the console shows it while shutting down."""
        with self.vm(name, script, poweroff=True) as vm:
            try:
                facts = vm.check(BOOT_TIMEOUT)
                if cut is None:
                    assert vm.wait_exit(300) == 0
                else:
                    vm.wait_for(cut, 300, f"/{cut}/ at shutdown")
                    vm.power_cut()
            finally:
                self.boots.append((name, round(vm.elapsed, 1)))
            return state_of(vm, name), facts


def state_of(vm: VM, name: str) -> dict[str, Any]:
    for source in (vm.check_port, vm.serial_log):
        text = source.read_bytes().decode(errors="replace").replace("\r", "")
        for line in text.splitlines():
            at = line.find(STATE_MARKER + " {")
            if at >= 0:
                try:
                    state: dict[str, Any] = json.loads(line[at + len(STATE_MARKER) + 1:])
                except ValueError:
                    continue
                if state["name"] == name:
                    return state
    raise AssertionError(f"{name}: no {STATE_MARKER} line on the console:\n{vm.serial_tail(60)}")


def host_status(state: dict[str, Any]) -> dict[str, Any]:
    assert state["status"]["rc"] == 0, state["status"]
    status: dict[str, Any] = json.loads(state["status"]["out"])["status"]
    return status


def digest_of(entry: dict[str, Any] | None) -> str | None:
    return None if entry is None else str(entry["image"]["imageDigest"])


def assert_whole(state: dict[str, Any], booted: str, variant: str) -> dict[str, Any]:
    """The host booted `variant` (manifest `booted`), its deployments all listed and whole."""
    assert state["variant"] == variant, state
    status = host_status(state)
    assert digest_of(status["booted"]) == booted, status
    assert status["staged"] is None, status
    assert state["empty_metadata_objects"] == [], state
    assert state["ostree_status"]["rc"] == 0, state
    # Every deployment ostree lists boots (a BLS entry each), and the config survived.
    assert len(state["bls"]) == state["ostree_status"]["out"].count("default "), state
    sizes = state["config_sizes"]
    assert sizes["/etc/systemd/network/20-bootc-py-test.network"], sizes
    assert sizes["/etc/containers/registries.conf.d/50-bootc-py-test.conf"], sizes
    return status


@pytest.fixture
def chain(installed_disk: Callable[..., Path], sample_images: SampleImages,
          vm_factory: Callable[..., VM], tmp_path: Path) -> Iterator[Chain]:
    with Registry(tmp_path / "registry") as reg:
        disk = installed_disk("--target-imgref", f"docker://{STABLE}",
                              "--karg=console=ttyS0,115200n8")
        sample_images.push("v1", f"{reg.host}/{REPO}:stable")
        sample_images.push("v2", f"{reg.host}/{REPO}:stable")
        yield Chain(disk, tmp_path, reg, vm_factory)


@pytest.mark.timeout(3600)
def test_power_cuts_and_disk_full_leave_a_whole_host(chain: Chain,
                                                     sample_images: SampleImages) -> None:
    v1, v2 = sample_images.manifest_digest("v1"), sample_images.manifest_digest("v2")
    top = sample_images.manifest("v2")["layers"][-1]["size"]
    assert 3 * top < DISK_FULL_MARGIN // 4, top     # the precheck lets the import start
    try:
        run_chain(chain, v1, v2)
    finally:
        print("boots (name, seconds):", chain.boots, file=sys.stderr)


def run_chain(chain: Chain, v1: str, v2: str) -> None:
    # Boot 1: disk full during import, then a power cut while the import assembles the tree.
    first = chain.cut_at("diskfull-cut-import",
                         NETWORK + DISK_FULL.format(margin=DISK_FULL_MARGIN)
                         + 'state diskfull-cut-import\n' + CANARY + UPGRADE_TO_CONSOLE,
                         IMPORTING)
    assert_whole(first, v1, "v1")
    disk_full(first)

    # Boot 2: v1, whole; the cut import left no deployment. Cut while staging.
    second = chain.cut_at("cut-staging", "wait_network\nstate cut-staging\n"
                          + UPGRADE_TO_CONSOLE, STAGING)
    status = assert_whole(second, v1, "v1")
    assert status["rollback"] is None, status
    print("unsynced canary before the first cut:",
          second["config_sizes"]["/etc/bootc-py-test/canary"], file=sys.stderr)

    # Boot 3: v1, whole; the cut staging left no staged deployment. `upgrade` succeeds now;
    # then the guest powers off and the power is cut as ostree finalizes at shutdown.
    third, facts = chain.boot("upgrade-cut-finalize", "wait_network\nstate upgrade-cut-finalize\n"
                              "bootc-py upgrade >&2\nsection status\nbootc-py status --json\n",
                              cut=FINALIZING)
    assert_whole(third, v1, "v1")
    assert facts["script"]["rc"] == 0, facts["script"]
    staged = json.loads(facts["script"]["stdout"].split("=== status\n", 1)[1])["status"]["staged"]
    assert digest_of(staged) == v2, staged

    # Boot 4: v1 or v2, whole; the repository verifies. On v1, the upgrade runs again.
    fourth, facts = chain.boot("after-finalize-cut", "wait_network\nstate after-finalize-cut\n"
                               "section fsck\nostree fsck --quiet >&2\n"
                               "[ \"$(cat /usr/share/bootc-py-fixture/variant)\" = v2 ] || "
                               "bootc-py upgrade >&2\n")
    assert facts["script"]["rc"] == 0, facts["script"]
    if fourth["variant"] == "v2":
        status = assert_whole(fourth, v2, "v2")
        assert digest_of(status["rollback"]) == v1, status
        return
    assert_whole(fourth, v1, "v1")
    fifth, _ = chain.boot("v2-booted", "state v2-booted\n")
    status = assert_whole(fifth, v2, "v2")
    assert digest_of(status["rollback"]) == v1, status


def disk_full(state: dict[str, Any]) -> None:
    """The disk-full run of boot 1: a one-line error, partial objects gone, space as before."""
    stderr = state["files"]["diskfull.stderr"]
    figures = dict(kv.split("=") for kv in state["files"]["diskfull"].split())
    rc, before, filled, failed, after = (int(figures[k]) for k in
                                         ("rc", "before", "filled", "failed", "after"))
    assert rc != 0, (figures, stderr)
    assert "Traceback" not in stderr, stderr
    errors = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    # The import's own message, or the CLI's for a write that failed while downloading.
    assert len(errors) == 1 and ("filled up while importing" in errors[0]
                                 or "no space left on" in errors[0]), stderr
    assert filled <= DISK_FULL_MARGIN + (64 << 10), figures
    # The failed import's objects were removed: the margin is free again, and once the
    # filler is gone the filesystem has the space it had before.
    assert abs(failed - filled) <= 64 << 10, figures
    assert abs(after - before) <= 64 << 10, figures
    assert state["repo_tmp"] == [] or all(not n.startswith("bootc-py-")
                                          for n in state["repo_tmp"]), state["repo_tmp"]

