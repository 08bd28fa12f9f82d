"""The proof of auto-heal: a bad update falls back by itself, and stays away.

The v1 sample is installed following `10.0.2.100:5000/bootc-py-autoheal:stable`, a
docker-registry on the host's 127.0.0.1 reached through a restricted user-net forward. The
first boot sets GREENBOOT_MAX_BOOT_ATTEMPTS=2 (fewer failing boots; the default stays 3),
green.d/red.d scripts that leave a line on the console and in /var, the health check's log on
the console, and `apply = "stage"` for the automatic updater (it stages, never reboots: the
test decides when a boot ends).

Boots (-no-reboot: every guest reboot ends qemu; the next boot is a fresh qemu on the disk):

test_grub_bad_update_falls_back_and_v2_is_taken (GRUB, BIOS): 5 boots
  1 v1: `bootc-py upgrade` stages `broken` (2 tries requested)          full
  2 broken, try 1: its required check fails, red.d runs, it reboots      short
  3 broken, try 2: the same                                              short
  4 GRUB starts v1 by itself: the fallback is made permanent, broken's   full
    digest recorded; the agent skips broken; v2 is pushed, the agent stages it
  5 v2: green, green.d ran, the counter cleared                          full

test_systemd_boot_bad_update_and_kernel_panic_fall_back (systemd-boot, UEFI): 7 boots
  1 v1: upgrade to broken                                                full
  2, 3 broken: red, reboot                                               short
  4 systemd-boot starts v1: permanent, recorded; broken staged by hand,  full
    the agent drops it and skips the image; v2 pushed, the agent stages it; the test
    adds `init=/bin/false panic=1` to the staged deployment
  5, 6 v2 (that karg): the kernel panics before any check, reboots       short
  7 systemd-boot starts v1: v2's digest recorded too (no verdict)        full
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from registry_fixture import Registry
from vmharness import VM, Drive, Firmware, GuestForward
from vmharness.samples import SampleImages

GUEST_REGISTRY = "10.0.2.100:5000"
REPO = "bootc-py-autoheal"
STABLE = f"{GUEST_REGISTRY}/{REPO}:stable"
INSTALL = ("--target-imgref", f"docker://{STABLE}", "--karg=console=ttyS0,115200n8")
BOOT_TIMEOUT = 600
AGENT = "bootc-py-fetch-apply-updates.service"

PRELUDE = r"""set -e
section() { echo "=== $1"; }
say() { echo "bootc-py-test: $*" > /dev/ttyS0; }
wait_net() {
    for i in $(seq 120); do ip -4 -o addr show scope global | grep -q . && return; sleep 1; done
}
# Before SETUP has configured the network there is none to wait for (that wait cost 120 s).
[ ! -e /etc/systemd/network/20-bootc-py-test.network ] || wait_net
# The check unit's settle wait is bounded (180 s): on a loaded machine the health check (after
# multi-user.target) may still run. Its verdict and any fallback come first.
for i in $(seq 900); do
    case $(systemctl show -P ActiveState bootc-py-healthcheck.service) in
        active|failed) break ;;
    esac
    sleep 1
done
"""
# Network and registry (persist in /etc), greenboot settings, follow-up scripts, console logs.
SETUP = r"""mkdir -p /etc/systemd/network /etc/containers/registries.conf.d /etc/bootc-py \
    /etc/greenboot/red.d /etc/greenboot/green.d /var/lib/bootc-py-test \
    /etc/systemd/system/bootc-py-healthcheck.service.d
printf '[Match]\nName=en* eth*\n[Network]\nDHCP=ipv4\n' \
    > /etc/systemd/network/20-bootc-py-test.network
printf '[[registry]]\nlocation = "10.0.2.100:5000"\ninsecure = true\n' \
    > /etc/containers/registries.conf.d/50-bootc-py-test.conf
systemctl enable --now systemd-networkd 2>/dev/null
wait_net
echo GREENBOOT_MAX_BOOT_ATTEMPTS=2 > /etc/greenboot/greenboot.conf
for stage in red green; do
    cat > /etc/greenboot/$stage.d/50-bootc-py-test.sh <<EOF
v=\$(cat /usr/share/bootc-py-fixture/variant)
echo "bootc-py-test: $stage.d ran on \$v" > /dev/ttyS0
echo "$stage \$v" >> /var/lib/bootc-py-test/followups.log
EOF
done
printf '[Service]\nStandardOutput=journal+console\nStandardError=journal+console\n' \
    > /etc/systemd/system/bootc-py-healthcheck.service.d/50-bootc-py-test.conf
printf 'apply = "stage"\n' > /etc/bootc-py/updates.toml
"""
UPGRADE = r"""bootc-py upgrade --quiet
section request
cat /boot/bootc-py/bootcount-request.json
"""
# The automatic updater's service (what the timer starts), and its log of that run only.
RUN_AGENT = r"""run_agent() {
    systemctl start bootc-py-fetch-apply-updates.service
    section "$1"
    id=$(systemctl show -P InvocationID bootc-py-fetch-apply-updates.service)
    journalctl -o cat --no-pager _SYSTEMD_INVOCATION_ID="$id"
}
"""
FALLBACK_FACTS = r"""section health
journalctl -b -o cat --no-pager -u bootc-py-healthcheck.service
section followups
cat /var/lib/bootc-py-test/followups.log
section status
bootc-py status --format humanreadable
"""
# After the agent skipped the bad image: wait (bounded) until the host pushed a newer one.
AWAIT_V2 = r"""say "waiting for a newer image"
for i in $(seq 150); do
    bootc-py upgrade --check --json | grep -q "$V2" && break
    sleep 2
done
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


def host_status(facts: dict[str, Any]) -> dict[str, Any]:
    status = facts["bootc_py"]
    assert status and status["ok"], status
    doc: dict[str, Any] = status["status"]
    return doc


def image_of(entry: dict[str, Any] | None) -> tuple[str, str]:
    assert entry is not None and entry["image"] is not None, entry
    return entry["image"]["image"]["image"], entry["image"]["imageDigest"]


@dataclass
class Host:
    disk: Path
    firmware: Firmware
    registry: Registry
    images: SampleImages
    work: Path
    factory: Callable[..., VM]
    boots: list[tuple[str, float]] = field(default_factory=list)

    def push(self, variant: str) -> None:
        self.images.push(variant, f"{self.registry.host}/{REPO}:stable")

    def vm(self, name: str, script: str | None, *, poweroff: bool = True) -> VM:
        workdir = self.work / f"{len(self.boots) + 1:02d}-{name}"
        return self.factory(drives=[Drive(self.disk)], firmware=self.firmware, name=name,
                            workdir=workdir, script=None if script is None else PRELUDE + script,
                            poweroff_after_check=poweroff,
                            guest_forwards=[GuestForward(self.registry.port)])

    def done(self, name: str, vm: VM) -> None:
        self.boots.append((name, round(vm.elapsed, 1)))

    def boot(self, name: str, script: str, *, last: bool = False) -> dict[str, Any]:
        """One full cold boot: the check report, after the guest powered itself off (`last`:
        the disk is not booted again, so qemu stops at the report instead)."""
        with self.vm(name, script, poweroff=not last) as vm:
            facts = vm.check(BOOT_TIMEOUT)
            if not last:
                assert vm.wait_exit(300) == 0
            self.done(name, vm)
        return facts

    def red_boot(self, name: str, variant: str) -> None:
        """A counted try that fails its required check: red.d runs, the guest reboots."""
        with self.vm(name, None, poweroff=False) as vm:
            vm.wait_for(r"required health checks failed: .*10-fixture-broken\.sh", BOOT_TIMEOUT,
                        "the health check failing the broken image")
            vm.wait_for(rf"bootc-py-test: red\.d ran on {variant}", 120, "red.d")
            assert vm.wait_exit(300) == 0  # the reboot it asked for (-no-reboot: qemu ends)
            self.done(name, vm)
        assert "a counted try of a new deployment: rebooting" in vm.serial_text()

    def panic_boot(self, name: str) -> None:
        with self.vm(name, None, poweroff=False) as vm:
            vm.wait_for(r"Kernel panic - not syncing", BOOT_TIMEOUT, "the kernel panic")
            assert vm.wait_exit(120) == 0  # panic=1: the kernel reboots, qemu ends
            self.done(name, vm)
        assert "BOOTC-PY-CHECK" not in vm.serial_text()  # never got to userspace checks

    def report(self) -> str:
        return ", ".join(f"{n} {s:.0f}s" for n, s in self.boots)


@pytest.fixture
def host(sample_images: SampleImages, installed_disk: Callable[..., Path],
         vm_factory: Callable[..., VM], tmp_path: Path) -> Iterator[Callable[..., Host]]:
    with Registry(tmp_path / "registry") as reg:
        def make(*install_args: str, firmware: Firmware) -> Host:
            h = Host(installed_disk(*INSTALL, *install_args), firmware, reg, sample_images,
                     tmp_path, vm_factory)
            h.push("v1")
            return h
        yield make


def upgrade_to_broken(h: Host) -> None:
    """Boot 1 (v1): the updater stages `broken`, asking for 2 tries."""
    broken = h.images.manifest_digest("broken")
    h.push("broken")
    first = h.boot("v1-upgrade", SETUP + UPGRADE)
    assert first["variant"] == "v1"
    status = host_status(first)["status"]
    assert image_of(status["staged"]) == (STABLE, broken)
    request = json.loads(sections(first)["request"])
    assert request == {"deployment": status["staged"]["ostree"]["checksum"], "tries": 2}


def fell_back(h: Host, facts: dict[str, Any], bad: list[str]) -> dict[str, str]:
    """Checks of the boot the bootloader fell back on (v1, no one touching it)."""
    v1 = h.images.manifest_digest("v1")
    assert facts["variant"] == "v1"
    out = sections(facts)
    assert "fell back from" in out["health"], out["health"]
    status = host_status(facts)
    assert image_of(status["status"]["booted"]) == (STABLE, v1)
    assert status["status"]["rollbackQueued"] is False  # permanent: v1 is the default again
    recorded = status["status"]["bootc-py.badImages"]
    assert [b["imageDigest"] for b in recorded] == bad
    assert all(b["fellBackTo"] == status["status"]["booted"]["ostree"]["checksum"]
               for b in recorded)
    assert status["status"]["booted"]["bootc-py.health"]["verdict"] == "green"
    assert f"{bad[-1]}: fell back" in out["status"], out["status"]
    return out


@pytest.mark.timeout(4000)
def test_grub_bad_update_falls_back_and_v2_is_taken(host: Callable[..., Host]) -> None:
    h = host(firmware="bios")
    broken, v2 = h.images.manifest_digest("broken"), h.images.manifest_digest("v2")
    upgrade_to_broken(h)
    h.red_boot("broken-try1", "broken")
    h.red_boot("broken-try2", "broken")

    # Boot 4: GRUB's counter ran out and it started v1. The agent skips broken (still the
    # tag's image); once v2 is pushed, the agent stages it.
    with h.vm("fallback", FALLBACK_FACTS + r"""
section grubenv
grub-editenv /boot/grub/grubenv list
""" + RUN_AGENT + "run_agent agent-skip\nsay agent skipped\n" + f"V2={v2}\n" + AWAIT_V2 +
                "run_agent agent-v2\n") as vm:
        vm.wait_for(r"bootc-py-test: waiting for a newer image", BOOT_TIMEOUT, "the agent's skip")
        h.push("v2")
        facts = vm.check(BOOT_TIMEOUT)
        assert vm.wait_exit(300) == 0
        h.done("fallback", vm)
    out = fell_back(h, facts, [broken])
    # (Boot 1's green.d ran before the test's script existed.)
    assert out["followups"] == "red broken\nred broken\ngreen v1\n"
    assert "boot_counter" not in out["grubenv"], out["grubenv"]
    assert "Skipping" in out["agent-skip"] and "fell back" in out["agent-skip"], out
    assert "up-to-date" in out["agent-skip"], out["agent-skip"]
    assert "leave-staged" in out["agent-v2"], out["agent-v2"]
    status = host_status(facts)["status"]
    assert image_of(status["staged"]) == (STABLE, v2)

    # Boot 5: v2, green: the counter is cleared, green.d ran.
    fifth = h.boot("v2-green", r"""section grubenv
grub-editenv /boot/grub/grubenv list
section followups
cat /var/lib/bootc-py-test/followups.log
""", last=True)
    assert fifth["variant"] == "v2"
    out = sections(fifth)
    assert "boot_success=1" in out["grubenv"] and "boot_counter" not in out["grubenv"], out
    assert out["followups"].endswith("green v2\n"), out["followups"]
    status = host_status(fifth)["status"]
    assert image_of(status["booted"]) == (STABLE, v2)
    assert status["booted"]["bootc-py.health"]["verdict"] == "green"
    assert [b["imageDigest"] for b in status["bootc-py.badImages"]] == [broken]
    print(f"\nboots: {h.report()}")


PANIC_KARGS = r"""
# A test-only kernel argument on the staged deployment: PID 1 exits, the kernel panics and
# (panic=1) reboots at once. Same commit, same origin: the boot-count request still names it.
key=$(head -n 1 /ostree/bootc-py/staged-origin)
tail -n +2 /ostree/bootc-py/staged-origin > /run/bootc-py-test-origin
ostree admin deploy --stage --os=default --origin-file=/run/bootc-py-test-origin \
    --karg-append=init=/bin/false --karg-append=panic=1 "${key%.*}"
section request
cat /boot/bootc-py/bootcount-request.json
section esp
ls /boot/efi/loader/entries
"""


@pytest.mark.timeout(5000)
def test_systemd_boot_bad_update_and_kernel_panic_fall_back(host: Callable[..., Host]) -> None:
    h = host("--bootloader=systemd", firmware="uefi")
    broken, v2 = h.images.manifest_digest("broken"), h.images.manifest_digest("v2")
    upgrade_to_broken(h)
    h.red_boot("broken-try1", "broken")
    h.red_boot("broken-try2", "broken")

    # Boot 4: systemd-boot started v1 (broken's entry has no tries left). An admin stages
    # broken again by hand; the agent drops it and skips the image.
    with h.vm("fallback", FALLBACK_FACTS + "section esp-fallback\nls /boot/efi/loader/entries\n"
              + "bootc-py upgrade --quiet\nsection staged-by-hand\nbootc-py status --json\n"
              + RUN_AGENT + "run_agent agent-skip\nsection after-skip\nbootc-py status --json\n"
              + f"V2={v2}\n" + AWAIT_V2
              + "run_agent agent-v2\n" + PANIC_KARGS) as vm:
        vm.wait_for(r"bootc-py-test: waiting for a newer image", BOOT_TIMEOUT, "the agent's skip")
        h.push("v2")
        facts = vm.check(BOOT_TIMEOUT)
        assert vm.wait_exit(300) == 0
        h.done("fallback", vm)
    out = fell_back(h, facts, [broken])
    assert out["followups"] == "red broken\nred broken\ngreen v1\n"
    assert not re.search(r"\+\d", out["esp-fallback"]), out["esp-fallback"]  # none counted
    by_hand = json.loads(out["staged-by-hand"])["status"]["staged"]
    assert by_hand is not None and image_of(by_hand)[1] == broken
    assert "dropped the staged deployment" in out["agent-skip"], out["agent-skip"]
    assert json.loads(out["after-skip"])["status"]["staged"] is None
    assert "Skipping" in out["agent-skip"] and "leave-staged" in out["agent-v2"], out
    staged = host_status(facts)["status"]["staged"]
    assert staged is not None and image_of(staged)[1] == v2
    assert json.loads(out["request"])["tries"] == 2

    # Boots 5, 6: the kernel panics (the checks never run); each try still counts.
    h.panic_boot("panic-try1")
    h.panic_boot("panic-try2")

    # Boot 7: systemd-boot started v1 again; v2's digest is recorded too.
    seventh = h.boot("panic-fallback",
                     FALLBACK_FACTS + "section esp\nls /boot/efi/loader/entries\n", last=True)
    out = fell_back(h, seventh, [broken, v2])
    assert out["followups"] == "red broken\nred broken\ngreen v1\ngreen v1\n"
    bad = host_status(seventh)["status"]["bootc-py.badImages"][1]
    assert "never reached the health checks" in bad["reason"], bad
    assert not re.search(r"\+\d", out["esp"]), out["esp"]
    print(f"\nboots: {h.report()}")
