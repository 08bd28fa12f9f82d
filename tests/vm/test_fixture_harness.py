"""The harness itself: the sample image's own kernel and initramfs boot a plain ext4 disk of
its flattened tree under both firmwares, and the guest's check report arrives; per-boot
scripts and clean power-off work across two cold boots; a guest that never reports fails
fast with what was awaited and the serial tail."""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from testlib import require_tool
from vmharness import VM, Drive, VMExited, VMTimeout
from vmharness.qemu import KERNEL_STALL_S
from vmharness.samples import DirectBootDisk


def _summary(facts: dict[str, Any]) -> str:
    keep = {k: facts.get(k) for k in ("variant", "system_state", "failed_units", "cmdline",
                                       "harness", "boot_timing")}
    return repr(keep)


@pytest.mark.parametrize("firmware", ["uefi", "bios"])
def test_direct_boot_reports_facts(firmware: str, direct_boot_disk: Callable[[str], DirectBootDisk],
                                   vm_factory: Callable[..., VM]) -> None:
    """Under BIOS the guest is also frozen (QMP stop) right after its first kernel line: the
    harness must see the stalled kernel, kill qemu and boot again cold, once, and still get
    the report (the TCG stall it guards against: vmharness/qemu.py KERNEL_STALL_S)."""
    d = direct_boot_disk("v1")
    stall = firmware == "bios"
    vm = vm_factory(name=f"direct-{firmware}", drives=[Drive(d.disk, snapshot=True)],
                    firmware=firmware, poweroff_after_check=True,
                    kernel_stall_s=8 if stall else KERNEL_STALL_S, **d.vm_args())
    with vm:
        if stall:
            vm.wait_for(r"Linux version", timeout=120)
            vm.qmp("stop")
        facts = vm.check()
        facts["harness"]["exit_status"] = vm.wait_exit(180)
    print(f"{firmware}: report after {facts['harness']['seconds_to_report']} s, "
          f"{facts.get('boot_timing')}")
    assert facts["harness"]["restarts_after_kernel_stall"] == (1 if stall else 0)
    stalled = vm.workdir / "serial.stalled.log"
    if stall:
        first = stalled.read_text(errors="replace")
        assert "Linux version" in first and "Run /init" not in first, first[-2000:]
    else:
        assert not stalled.exists()
    assert facts["variant"] == "v1", _summary(facts)
    assert f"root=LABEL={d.label}" in facts["cmdline"].split()
    assert facts["kernel"] == d.rootfs.kver
    root = facts["mounts"]["/"]
    assert (root["fstype"], root["writable"], root["ro"]) == ("ext4", True, False), root
    assert facts["mounts"]["/usr"]["writable"] is True          # a plain disk: no ostree
    assert facts["mounts"]["/boot/efi"] == {"exists": False}
    assert facts["ostree"]["booted"] is False
    assert facts["ostree"]["booted_deployment"] is None
    assert facts["hostname"] == "bootc-py-fixture"
    root_user = next(u for u in facts["users"] if u["name"] == "root")
    assert root_user["password"] == "empty" and root_user["authorized_keys"] == []
    assert facts["bootc_py"] is not None, "bootc-py is not in the image"
    assert facts["script"] is None
    assert facts["system_state"] == "running", _summary(facts)
    assert facts["failed_units"] == [], _summary(facts)
    assert facts["harness"]["exit_status"] == 0           # the guest powered itself off


def test_script_and_persistence_across_cold_boots(
        direct_boot_disk: Callable[[str], DirectBootDisk],
        boot_check: Callable[..., dict[str, Any]], tmp_path: Path) -> None:
    """Boot, write /etc and /var from a script, power off; boot again (other firmware), read.
    The disk is a qcow2 overlay on the shared raw disk."""
    require_tool("qemu-img")
    d = direct_boot_disk("v1")
    overlay = tmp_path / "overlay.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(d.disk), "-F", "raw",
                    str(overlay)], check=True)
    first = boot_check(overlay, firmware="uefi", name="write", **d.vm_args(), script=(
        "set -e\necho persisted-etc > /etc/bootc-py-harness\n"
        "echo persisted-var > /var/lib/bootc-py-harness\necho $((6 * 7))\n"
        "echo to-stderr >&2\n"))
    assert first["script"]["rc"] == 0, first["script"]
    assert first["script"]["stdout"] == "42\n"
    assert first["script"]["stderr"] == "to-stderr\n"
    assert first["harness"]["exit_status"] == 0

    second = boot_check(overlay, firmware="bios", name="read", **d.vm_args(),
                        script="cat /etc/bootc-py-harness /var/lib/bootc-py-harness; exit 3\n")
    assert second["script"]["stdout"] == "persisted-etc\npersisted-var\n", second["script"]
    assert second["script"]["rc"] == 3
    assert second["machine_id"] == first["machine_id"]       # the same installed system


def test_timeout_names_what_was_awaited_and_the_serial_tail(
        direct_boot_disk: Callable[[str], DirectBootDisk],
        vm_factory: Callable[..., VM]) -> None:
    """A kernel without its initramfs panics (no virtio_blk) and hangs (panic=0): no report."""
    d = direct_boot_disk("v1")
    vm = vm_factory(name="never-reports", firmware="bios", kernel=d.rootfs.vmlinuz,
                    append="console=ttyS0 root=/dev/vda panic=0")
    with vm:
        assert vm.wait_for(r"Linux version (\S+)", timeout=120)[1] == d.rootfs.kver
        t0 = time.monotonic()
        with pytest.raises(VMTimeout) as err:
            vm.check(timeout=20)
        waited = time.monotonic() - t0
    msg = str(err.value)
    assert waited < 30
    assert "timed out after 20 s waiting for the guest's BOOTC-PY-CHECK report" in msg
    assert "last serial console lines" in msg and str(vm.serial_log) in msg
    assert "Kernel panic" in msg or "VFS" in msg, msg


def test_qemu_exit_ends_the_wait_at_once(direct_boot_disk: Callable[[str], DirectBootDisk],
                                         vm_factory: Callable[..., VM]) -> None:
    """The same panic with panic=1 reboots, and -no-reboot ends qemu: no need to time out."""
    d = direct_boot_disk("v1")
    vm = vm_factory(name="exits", firmware="bios", kernel=d.rootfs.vmlinuz,
                    append="console=ttyS0 root=/dev/vda panic=1")
    with vm, pytest.raises(VMExited) as err:
        vm.check(timeout=600)
    assert vm.elapsed < 120
    assert "qemu exited (status 0)" in str(err.value)
    assert "while waiting for the guest's BOOTC-PY-CHECK report" in str(err.value)
    assert "Kernel panic" in str(err.value)
    assert [e["data"]["reason"] for e in vm.events if e["event"] == "SHUTDOWN"] == \
        ["guest-reset"], vm.events


def test_network_boot_from_tftp_and_a_forwarded_port(
        direct_boot_disk: Callable[[str], DirectBootDisk], vm_factory: Callable[..., VM],
        tmp_path: Path) -> None:
    """PXE (iPXE script over qemu's TFTP) fetches the image's kernel and initramfs; then a
    guest TCP port is reachable on a 127.0.0.1 forward (restrict=on: nothing else)."""
    d = direct_boot_disk("v1")
    tftp = tmp_path / "tftp"
    tftp.mkdir()
    shutil.copyfile(d.rootfs.vmlinuz, tftp / "vmlinuz")
    shutil.copyfile(d.rootfs.initramfs, tftp / "initramfs.img")
    (tftp / "boot.ipxe").write_text(
        "#!ipxe\n"
        f"kernel vmlinuz initrd=initramfs.img {d.vm_args()['append']}\n"
        "initrd initramfs.img\nboot\n")
    serve = ("set -e\ndev=$(ls /sys/class/net | grep -v '^lo$' | head -n1)\n"
             "ip link set \"$dev\" up\nip addr add 10.0.2.15/24 dev \"$dev\"\n"
             "systemd-run --unit=fixture-http --working-directory=/usr/share/bootc-py-fixture "
             "python3 -m http.server 8080\necho \"$dev\"\n")
    vm = vm_factory(name="netboot", firmware="bios", boot="net", tftp=tftp,
                    bootfile="boot.ipxe", drives=[Drive(d.disk, snapshot=True)],
                    forwards=[8080], script=serve)
    with vm:
        facts = vm.check()
        assert facts["script"]["rc"] == 0, facts["script"]
        assert "initrd=initramfs.img" in facts["cmdline"]
        assert facts["variant"] == "v1"
        url = f"http://127.0.0.1:{vm.host_ports[8080]}/variant"
        body = None
        for _ in range(60):
            try:
                with urllib.request.urlopen(url, timeout=10) as resp:
                    body = resp.read().decode()
                break
            except OSError:
                time.sleep(1)
        assert body == "v1\n", f"nothing served on {url}"
        assert vm.poweroff() == 0
