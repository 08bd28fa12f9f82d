"""The update strategies on a real host: fleet_lock (a FleetLock server decides when the host
may reboot) and periodic (a maintenance window does), chained so they share boots.

The FleetLock test server (tests/fleetlock_server.py, the protocol to the letter) listens on
the host's 127.0.0.1; the guest reaches it as 10.0.2.100:8080 through a second restricted
user-net forward, beside the registry's 10.0.2.100:5000. The agent's log goes to the console
(a runtime drop-in), so the test sees its decisions while the guest runs.

Cold boots (3; about 2-4 min each under TCG on the shared machine, the first two include
several agent runs):
    1 v1, policy fleet_lock, the group's only slot held by another id: the agent stages v2
      and does not reboot; its retries (transient timers) are refused too; the test releases
      the slot: the next retry locks and reboots (qemu ends on the reboot)
    2 v2 booted: after the green health check bootc-py-steady-state.service released the
      slot. Policy periodic, window elsewhere: v1 (pushed again) is staged, two agent runs do
      not reboot; the window is moved to now: the timer's next run reboots
    3 v1 booted by the periodic reboot
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from test_update_host import BOOT_TIMEOUT, FIRST_BOOT, REPO, STABLE, image_of, sections

from bootc_py.update.fleetlock import app_specific_id
from fleetlock_server import FleetLockServer
from registry_fixture import Registry
from vmharness import VM, Drive, GuestForward
from vmharness.samples import SampleImages

GROUP = "workers"
OTHER_HOST = "0f0f0f0f0f0f4f0f8f0f0f0f0f0f0f0f"
LOCK_URL = "http://10.0.2.100:8080/"
SERVICE = "bootc-py-fetch-apply-updates.service"

NETWORK = FIRST_BOOT + r"""for i in $(seq 180); do
    ip -4 -o addr show scope global | grep -q . && break
    sleep 1
done
section() { echo "=== $1"; }
"""
# For this boot only (/run): the agent's log on the console, where the test watches for it.
AGENT_ON_CONSOLE = r"""mkdir -p /run/systemd/system/bootc-py-fetch-apply-updates.service.d
printf '[Service]\nStandardOutput=journal+console\nStandardError=journal+console\n' \
    > /run/systemd/system/bootc-py-fetch-apply-updates.service.d/50-bootc-py-test.conf
systemctl daemon-reload
"""
FLEET_LOCK_POLICY = f"""mkdir -p /etc/bootc-py
cat > /etc/bootc-py/updates.toml <<'EOF'
[updates]
strategy = "fleet_lock"
[updates.fleet_lock]
base_url = "{LOCK_URL}"
group = "{GROUP}"
EOF
"""
AGENT_LOG = f"""section agent
journalctl -b -o cat -u {SERVICE} --no-pager | grep 'update agent'
section status
bootc-py status --json
"""
# periodic, one daily window starting at `$1` (minutes from now, UTC) for `$2` minutes.
PERIODIC_POLICY = r"""window() {
cat > /etc/bootc-py/updates.toml <<EOF
[updates]
strategy = "periodic"
[updates.periodic]
time_zone = "UTC"
[[updates.periodic.window]]
days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
start_time = "$(date -u -d "$1 minutes" +%H:%M)"
length_minutes = $2
EOF
}
"""
# For this boot only: the timer runs the agent 5 s after it restarts, then 90 s after each
# run (room for the check report to go out before the run that reboots).
FAST_TIMER = r"""mkdir -p /run/systemd/system/bootc-py-fetch-apply-updates.timer.d
printf '%s\n' '[Timer]' OnBootSec= OnActiveSec=5s OnUnitInactiveSec=90s RandomizedDelaySec=0 \
    AccuracySec=1s > /run/systemd/system/bootc-py-fetch-apply-updates.timer.d/50-test.conf
systemctl daemon-reload
systemctl restart bootc-py-fetch-apply-updates.timer
"""


def lock_requests(server: FleetLockServer, endpoint: str, client_id: str) -> int:
    return sum(1 for path, body in server.requests
               if path == endpoint and body is not None
               and body.get("client_params") == {"id": client_id, "group": GROUP})


@pytest.mark.timeout(3600)
def test_fleet_lock_then_periodic(sample_images: SampleImages, vm_factory: Callable[..., VM],
                                  installed_disk: Callable[..., Path], tmp_path: Path) -> None:
    img = sample_images
    v1, v2 = img.manifest_digest("v1"), img.manifest_digest("v2")
    disk = installed_disk("--target-imgref", f"docker://{STABLE}",
                          "--karg=console=ttyS0,115200n8")
    durations: list[float] = []
    with Registry(tmp_path / "registry") as reg, \
            FleetLockServer(slots={GROUP: 1}) as lock:
        lock_port = int(lock.base_url.rsplit(":", 1)[1].strip("/"))

        def vm(name: str, script: str, poweroff: bool) -> VM:
            return vm_factory(drives=[Drive(disk)], firmware="uefi", name=name,
                              workdir=tmp_path / f"{len(durations) + 1:02d}-{name}",
                              script="set -e\n" + script, poweroff_after_check=poweroff,
                              guest_forwards=[GuestForward(reg.port),
                                              GuestForward(lock_port, guest_port=8080)])

        img.push("v2", f"{reg.host}/{REPO}:stable")
        lock.hold(GROUP, OTHER_HOST)

        # Boot 1 (v1): fleet_lock, the only slot taken. The agent stages v2, does not reboot.
        with vm("fleet-lock-waits", NETWORK + AGENT_ON_CONSOLE + FLEET_LOCK_POLICY + f"""
systemctl start {SERVICE}
""" + AGENT_LOG, poweroff=False) as first:
            facts = first.check(BOOT_TIMEOUT)
            out = sections(facts)
            assert facts["variant"] == "v1"
            agent = out["agent"]
            assert "leave-staged" in agent and f"no FleetLock slot in group '{GROUP}'" in agent \
                and "failed_lock_semaphore_full" in agent, agent
            status = json.loads(out["status"])["status"]
            assert image_of(status["booted"]) == (STABLE, v1)
            assert image_of(status["staged"]) == (STABLE, v2)
            me = app_specific_id(facts["machine_id"])
            assert lock.holders(GROUP) == {OTHER_HOST}
            # The retries (transient timers: a new agent run each) are refused too, and the
            # host stays up.
            deadline = time.monotonic() + 900
            while lock_requests(lock, "/v1/pre-reboot", me) < 3:
                assert first.running(), first.serial_tail(40)
                assert time.monotonic() < deadline, "the agent did not retry the lock"
                time.sleep(2)
            assert first.running() and lock.holders(GROUP) == {OTHER_HOST}
            assert "update agent: reboot:" not in first.serial_text()
            # The other host is done: the next retry takes the slot and reboots.
            lock.release(GROUP, OTHER_HOST)
            first.wait_for(r"update agent: reboot: .*holding a FleetLock slot", BOOT_TIMEOUT,
                           "the agent rebooting with the lock")
            assert first.wait_exit(300) == 0
            durations.append(first.elapsed)
        assert lock.holders(GROUP) == {me}
        steady_before = lock_requests(lock, "/v1/steady-state", me)

        # Boot 2 (v2): green, the slot given back. Then periodic, the window elsewhere.
        img.push("v1", f"{reg.host}/{REPO}:stable")
        with vm("periodic-waits", NETWORK + AGENT_ON_CONSOLE + r"""
section steady
systemctl show -P Result bootc-py-steady-state.service
journalctl -b -o cat -u bootc-py-steady-state.service --no-pager | grep 'update agent'
""" + PERIODIC_POLICY + f"""window 180 60
systemctl start {SERVICE}
t=$(systemctl show -P ExecMainExitTimestampMonotonic {SERVICE})
""" + FAST_TIMER + f"""for i in $(seq 300); do
    # The next run has ended: a new exit time (a run in progress shows 0) and not activating.
    now=$(systemctl show -P ExecMainExitTimestampMonotonic {SERVICE})
    [ "$now" != "$t" ] && [ "$now" != 0 ] && \
        [ "$(systemctl show -P ActiveState {SERVICE})" != activating ] && break
    sleep 2
done
""" + AGENT_LOG + """window -10 120
section policy
cat /etc/bootc-py/updates.toml
""", poweroff=False) as second:
            facts = second.check(BOOT_TIMEOUT)
            out = sections(facts)
            assert facts["variant"] == "v2"
            assert app_specific_id(facts["machine_id"]) == me
            assert out["steady"].startswith("success\n"), out["steady"]
            assert "steady state reported (health check green" in out["steady"], out["steady"]
            assert lock.holders(GROUP) == set()
            assert lock_requests(lock, "/v1/steady-state", me) > steady_before
            agent = out["agent"]
            waits = [ln for ln in agent.splitlines()
                     if "leave-staged" in ln and "waiting for the maintenance window" in ln]
            assert len(waits) == 2, agent
            assert "update agent: reboot:" not in agent
            status = json.loads(out["status"])["status"]
            assert image_of(status["booted"]) == (STABLE, v2)
            assert image_of(status["staged"]) == (STABLE, v1)
            assert second.running()
            second.wait_for(r"update agent: reboot: .*inside the maintenance window",
                            BOOT_TIMEOUT, "the agent rebooting inside the moved window")
            assert second.wait_exit(300) == 0
            durations.append(second.elapsed)

        # Boot 3: the periodic reboot booted v1. The last boot: qemu stops at the report.
        with vm("periodic-rebooted", 'section() { echo "=== $1"; }\nsection status\n'
                "bootc-py status --json\n",
                poweroff=False) as third:
            facts = third.check(BOOT_TIMEOUT)
            durations.append(third.elapsed)
        assert facts["variant"] == "v1"
        status = json.loads(sections(facts)["status"])["status"]
        assert image_of(status["booted"]) == (STABLE, v1)
        assert facts["failed_units"] == []
        assert lock.holders(GROUP) == set()
    print(f"boots: {len(durations)}, seconds each: {[round(d) for d in durations]}")
