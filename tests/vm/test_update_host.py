"""The proof of the embedded updater: an installed host upgrades itself from a registry.

The v1 sample is installed to a disk that follows `10.0.2.100:5000/bootc-py-fixture:stable`;
the images live in a docker-registry on the host's 127.0.0.1, which the guest reaches only
through a restricted user-net forward (guestfwd with one relay per connection; the relay logs
every request, so the test counts which blobs a command fetched). The first boot configures the
guest's network (systemd-networkd, DHCP) and marks the registry insecure in
/etc/containers/registries.conf.d; both persist in /etc.

Cold boots (about 90-120 s each under TCG on the shared machine):
- test_upgrade_rollback_switch_and_the_timer: 6 boots
    1 v1: `upgrade --check --json` (v2's digest, no layer fetched), `status` (cachedUpdate),
      `upgrade` (exactly v2's top layer fetched), local /etc and /var changes
    2 v2 booted, v1 rollback, /etc merged, /var kept; `rollback`
    3 v1 booted; `switch` to another tag, then a test drop-in that shortens the timer, written
      after the switch staged: finalize at shutdown merges it into the new deployment's /etc
    4 that tag booted (check report) and nobody touches the host: the timer upgrades and
      reboots it (qemu ends on the reboot)
    5 the new image booted; policy `apply = "stage"`
    6 nobody touches the host: the timer stages, does not reboot
- the power-cut and disk-full proof is tests/vm/test_update_powercut.py.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from registry_fixture import Registry
from vmharness import VM, Drive, GuestForward
from vmharness.samples import SampleImages

BOOTC_PY = Path(sys.executable).parent / "bootc-py"
GUEST_REGISTRY = "10.0.2.100:5000"
REPO = "bootc-py-fixture"
STABLE = f"{GUEST_REGISTRY}/{REPO}:stable"
OTHER = f"{GUEST_REGISTRY}/{REPO}:other"
SERVICE = "bootc-py-fetch-apply-updates.service"
BOOT_TIMEOUT = 600

# Shell run by the guest's check unit before it reports. `mark NAME` leaves a request line in
# the relay's log, so the host can tell which requests a command made.
PRELUDE = r"""set -e
mark() { python3 -c 'import sys, urllib.request
urllib.request.urlopen("http://10.0.2.100:5000/v2/?bootc-py-test=" + sys.argv[1]).read()' "$1"; }
section() { echo "=== $1"; }
wait_net() {
    for i in $(seq 120); do ip -4 -o addr show scope global | grep -q . && return; sleep 1; done
}
# Before FIRST_BOOT has configured the network there is none to wait for (that wait cost 120 s).
[ ! -e /etc/systemd/network/20-bootc-py-test.network ] || wait_net
"""
FIRST_BOOT = r"""mkdir -p /etc/systemd/network /etc/containers/registries.conf.d
printf '[Match]\nName=en* eth*\n[Network]\nDHCP=ipv4\n' \
    > /etc/systemd/network/20-bootc-py-test.network
printf '[[registry]]\nlocation = "10.0.2.100:5000"\ninsecure = true\n' \
    > /etc/containers/registries.conf.d/50-bootc-py-test.conf
systemctl enable --now systemd-networkd 2>/dev/null
# Self-contained (test_update_strategies uses it without PRELUDE).
for i in $(seq 120); do ip -4 -o addr show scope global | grep -q . && break; sleep 1; done
"""
# What an admin changed locally, and data in /var: both must outlive every update.
LOCAL_CHANGES = r"""mkdir -p /etc/bootc-py-test /var/lib/bootc-py-test
echo local-etc > /etc/bootc-py-test/local.conf
echo local-motd > /etc/motd
echo var-data > /var/lib/bootc-py-test/data
"""
SHOW_CHANGES = r"""section files
cat /etc/bootc-py-fixture/variant.conf /etc/bootc-py-test/local.conf /etc/motd \
    /var/lib/bootc-py-test/data
"""
# The timer, sooner (30 s after it starts at boot, no random delay), its service's log on
# the console. (OnBootSec= is no use here: it has passed by the time the timer starts under
# TCG, and a monotonic timer does not fire for a time before it started. One empty
# assignment resets all the On*Sec= triggers of the timer, so there is exactly one.)
TIMER_DROPINS = r"""mkdir -p /etc/systemd/system/bootc-py-fetch-apply-updates.timer.d \
    /etc/systemd/system/bootc-py-fetch-apply-updates.service.d
printf '%s\n' '[Timer]' OnBootSec= OnActiveSec=30s OnUnitInactiveSec=1h RandomizedDelaySec=0 \
    > /etc/systemd/system/bootc-py-fetch-apply-updates.timer.d/50-bootc-py-test.conf
printf '[Service]\nStandardOutput=journal+console\nStandardError=journal+console\n' \
    > /etc/systemd/system/bootc-py-fetch-apply-updates.service.d/50-bootc-py-test.conf
"""
# Waits (bounded) until the timer's service has run once in this boot, then shows its log.
AWAIT_AGENT = r"""for i in $(seq 300); do
    t=$(systemctl show -P ExecMainExitTimestampMonotonic bootc-py-fetch-apply-updates.service)
    [ "${t:-0}" -gt 0 ] && break
    sleep 2
done
section agent
systemctl show -P Result bootc-py-fetch-apply-updates.service
journalctl -b -o cat -u bootc-py-fetch-apply-updates.service --no-pager
"""


def sections(facts: dict[str, Any]) -> dict[str, str]:
    """The guest script's stdout split at `=== NAME` lines; fails on a failed script."""
    script = facts["script"]
    assert script is not None and script["rc"] == 0, script
    out: dict[str, str] = {}
    name = ""
    for line in str(script["stdout"]).splitlines():
        if line.startswith("=== "):
            name = line[4:].strip()
            out[name] = ""
        else:
            out[name] = out.get(name, "") + line + "\n"
    return out


def booted_status(facts: dict[str, Any]) -> dict[str, Any]:
    status = facts["bootc_py"]
    assert status and status["ok"], status
    host: dict[str, Any] = status["status"]
    return host


def image_of(entry: dict[str, Any] | None) -> tuple[str, str]:
    assert entry is not None and entry["image"] is not None, entry
    return entry["image"]["image"]["image"], entry["image"]["imageDigest"]


@dataclass
class Host:
    """The installed disk, the registry it follows, and the relay's request log."""

    disk: Path
    registry: Registry
    images: SampleImages
    log: Path
    work: Path
    factory: Callable[..., VM]      # tests/vm/conftest.py's vm_factory: serial tails on failure
    boots: int = 0

    def push(self, variant: str, tag: str) -> None:
        self.images.push(variant, f"{self.registry.host}/{REPO}:{tag}")

    def vm(self, name: str, script: str | None, *, poweroff: bool = True) -> VM:
        self.boots += 1
        workdir = self.work / f"{self.boots:02d}-{name}"
        return self.factory(drives=[Drive(self.disk)], firmware="uefi", name=name,
                            workdir=workdir, script=None if script is None else PRELUDE + script,
                            poweroff_after_check=poweroff,
                            guest_forwards=[GuestForward(self.registry.port, log=self.log)])

    def boot(self, name: str, script: str | None, *, last: bool = False) -> dict[str, Any]:
        """One cold boot: the check report, after the guest powered itself off (`last`: the
        disk is not booted again, so qemu stops at the report instead)."""
        with self.vm(name, script, poweroff=not last) as vm:
            facts = vm.check(BOOT_TIMEOUT)
            if not last:
                assert vm.wait_exit(300) == 0
        return facts

    def requests(self, start: str, end: str) -> list[str]:
        """Request lines the guest sent between `mark start` and `mark end`."""
        lines = self.log.read_text().splitlines()
        a = lines.index(f"GET /v2/?bootc-py-test={start}")
        b = lines.index(f"GET /v2/?bootc-py-test={end}")
        return lines[a + 1:b]

    def layer_fetches(self, start: str, end: str) -> list[str]:
        """Digests of the layer blobs GET between two marks (config blobs left out)."""
        layers = {d for v in self.images.variants for d in self.images.layer_digests(v)}
        fetched = [m.group(1) for line in self.requests(start, end)
                   if (m := re.match(r"GET /v2/.*/blobs/(sha256:[0-9a-f]{64})$", line))]
        return [d for d in fetched if d in layers]


@pytest.fixture
def host(sample_images: SampleImages, vm_factory: Callable[..., VM],
         tmp_path: Path) -> Iterator[Callable[[], Host]]:
    """A fresh install of v1 following STABLE, with v1 pushed as :stable."""
    with Registry(tmp_path / "registry") as reg:
        def make() -> Host:
            disk = tmp_path / "disk.raw"
            res = subprocess.run(
                [str(BOOTC_PY), "install", "to-disk", "--via-loopback",
                 "--source-imgref", sample_images.ref("v1"),
                 "--target-imgref", f"docker://{STABLE}",
                 "--karg=console=ttyS0,115200n8", str(disk)],
                capture_output=True, text=True, timeout=1800)
            assert res.returncode == 0, res.stderr[-3000:]
            h = Host(disk=disk, registry=reg, images=sample_images,
                     log=tmp_path / "requests.log", work=tmp_path, factory=vm_factory)
            h.push("v1", "stable")
            return h
        yield make


def test_upgrade_rollback_switch_and_the_timer(host: Callable[[], Host]) -> None:
    h = host()
    img = h.images
    v1, v2 = img.manifest_digest("v1"), img.manifest_digest("v2")
    # The variants share the OS and bootc-py layers: an update is the top layer alone.
    assert img.layer_digests("v1")[:2] == img.layer_digests("v2")[:2]
    v2_top = img.layer_digests("v2")[2]
    h.push("v2", "stable")

    # Boot 1 (v1): check, status, upgrade.
    first = h.boot("v1-upgrade", FIRST_BOOT + LOCAL_CHANGES + r"""
mark check-start
section check
bootc-py upgrade --check --json
mark check-done
section status
bootc-py status --json
mark upgrade-start
bootc-py upgrade --quiet >&2
mark upgrade-done
""")
    assert first["variant"] == "v1"
    out = sections(first)
    check = json.loads(out["check"])
    assert v2 in json.dumps(check), check
    assert h.layer_fetches("check-start", "check-done") == []
    assert not any("/blobs/" in r and v2_top in r for r in h.requests("check-start",
                                                                      "check-done"))
    cached = json.loads(out["status"])["status"]["booted"]["cachedUpdate"]
    assert cached is not None and cached["imageDigest"] == v2, cached
    assert h.layer_fetches("upgrade-start", "upgrade-done") == [v2_top]
    status = booted_status(first)["status"]
    assert image_of(status["staged"]) == (STABLE, v2)
    assert image_of(status["booted"]) == (STABLE, v1)

    # Boot 2: v2 booted, v1 rollback; /etc merged three ways; /var kept. Then rollback.
    second = h.boot("v2-booted", SHOW_CHANGES + r"""
section status
bootc-py status --json
bootc-py rollback >&2
""")
    assert second["variant"] == "v2"
    out = sections(second)
    status = json.loads(out["status"])["status"]
    assert image_of(status["booted"]) == (STABLE, v2)
    assert image_of(status["rollback"]) == (STABLE, v1)
    assert status["staged"] is None
    assert out["files"].split("\n")[1:] == ["variant=v2", "local-etc", "local-motd",
                                            "var-data", ""]
    assert booted_status(second)["status"]["rollbackQueued"] is True

    # Boot 3: the rollback booted v1. Then switch to another tag (v2 pushed there: its layers
    # are all on the host already, so nothing is fetched). The timer drop-ins are written
    # after the switch staged: they reach the new deployment through finalize's /etc merge.
    h.push("v2", "other")
    third = h.boot("rolled-back", SHOW_CHANGES + f"""
mark switch-start
bootc-py switch {OTHER} >&2
mark switch-done
""" + TIMER_DROPINS)
    assert third["variant"] == "v1"
    assert sections(third)["files"].split("\n")[1:3] == ["variant=v1", "local-etc"]
    assert h.layer_fetches("switch-start", "switch-done") == []
    status = booted_status(third)["status"]
    assert image_of(status["booted"]) == (STABLE, v1)
    assert image_of(status["staged"]) == (OTHER, v2)

    the_timer_updates_an_untouched_host(h)


def the_timer_updates_an_untouched_host(h: Host) -> None:
    """Boots 4-6: the host has switched to OTHER (v2, staged) and has the test drop-ins."""
    v1, v2 = h.images.manifest_digest("v1"), h.images.manifest_digest("v2")

    # Boot 4: the other tag booted, with the drop-ins written after the switch. A new image
    # on the followed tag; nobody touches the host. The timer fetches, stages and reboots
    # (-no-reboot: qemu ends when the guest reboots).
    h.push("v1", "other")
    with h.vm("switched-timer-reboots", None, poweroff=False) as vm:
        fourth = vm.check(BOOT_TIMEOUT)
        assert fourth["variant"] == "v2"
        host_status = booted_status(fourth)
        assert image_of(host_status["status"]["booted"]) == (OTHER, v2)
        assert host_status["spec"]["image"]["image"] == OTHER
        vm.wait_for(r"update agent: reboot: ", BOOT_TIMEOUT, "the agent deciding to reboot")
        assert vm.wait_exit(300) == 0
        assert re.search(r"reboot", vm.serial_tail(40), re.I)

    # Boot 5: the timer's update booted. Stage-only from now on.
    fifth = h.boot("timer-updated", """mkdir -p /etc/bootc-py
printf 'apply = "stage"\\n' > /etc/bootc-py/updates.toml
""")
    assert fifth["variant"] == "v1"
    assert image_of(booted_status(fifth)["status"]["booted"]) == (OTHER, v1)

    # Boot 6: another new image; nobody touches the host. The timer stages it and the host
    # keeps running (the report comes after the agent finished).
    h.push("v2", "other")
    sixth = h.boot("timer-stages", AWAIT_AGENT, last=True)
    assert sixth["variant"] == "v1"
    agent = sections(sixth)["agent"]
    assert agent.startswith("success\n"), agent
    assert "leave-staged" in agent and 'apply = "stage"' in agent, agent
    status = booted_status(sixth)["status"]
    assert image_of(status["booted"]) == (OTHER, v1)
    assert image_of(status["staged"]) == (OTHER, v2)
    assert sixth["failed_units"] == []
