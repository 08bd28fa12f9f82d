"""The harness's qemu command line: what it promises (TCG, q35, -no-reboot, loopback-only
forwards, private UEFI vars, virtio everywhere) and that qemu accepts every combination
(started, inspected over QMP, stopped: no guest boots here, so these are fast)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from vmharness import VM, Drive, Forward, VMError
from vmharness.qemu import OVMF_VARS


def _opt(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def test_defaults(tmp_path: Path) -> None:
    vm = VM(drives=[tmp_path / "a.raw"], workdir=tmp_path)
    argv = vm.argv()
    assert argv[argv.index("-accel") + 1] == "tcg"
    assert argv[argv.index("-machine") + 1] == "q35"
    assert "-no-reboot" in argv
    assert _opt(argv, "-nic") == ["none"]
    assert any("OVMF_CODE_4M.fd" in d and "readonly=on" in d for d in _opt(argv, "-drive"))
    assert any(f"file={tmp_path / 'OVMF_VARS.fd'}" in d for d in _opt(argv, "-drive"))
    assert "virtio-blk-pci,drive=disk0,bootindex=0" in _opt(argv, "-device")
    assert "format=raw" in _opt(argv, "-drive")[-1]
    assert "cache=unsafe" in _opt(argv, "-drive")[-1]


def test_a_virtio_scsi_disk_gets_its_own_controller(tmp_path: Path) -> None:
    argv = VM(drives=[Drive(tmp_path / "a.raw", bus="virtio-scsi", cache="none")],
              workdir=tmp_path).argv()
    assert "virtio-scsi-pci,id=dscsi0" in _opt(argv, "-device")
    assert "scsi-hd,bus=dscsi0.0,drive=disk0,bootindex=0" in _opt(argv, "-device")
    assert "cache=none" in _opt(argv, "-drive")[-1]


def test_bios_has_no_pflash_and_kernel_takes_boot_index_0(tmp_path: Path) -> None:
    vm = VM(drives=[Drive(tmp_path / "a.qcow2", serial="target")], firmware="bios",
            kernel=tmp_path / "k", initrd=tmp_path / "i", append="console=ttyS0",
            workdir=tmp_path)
    argv = vm.argv()
    assert not any("if=pflash" in d for d in _opt(argv, "-drive"))
    assert "format=qcow2" in _opt(argv, "-drive")[0]
    assert "virtio-blk-pci,drive=disk0,bootindex=1,serial=target" in _opt(argv, "-device")
    assert _opt(argv, "-append") == ["console=ttyS0"]


def test_network_is_restricted_and_forwards_bind_loopback(tmp_path: Path) -> None:
    vm = VM(forwards=[22, Forward(80, 18080)], tftp=tmp_path, bootfile="boot.ipxe",
            boot="net", workdir=tmp_path)
    [netdev] = _opt(vm.argv(), "-netdev")
    assert netdev.startswith("user,id=net0,restrict=on,")
    assert f"hostfwd=tcp:127.0.0.1:{vm.host_ports[22]}-:22" in netdev
    assert "hostfwd=tcp:127.0.0.1:18080-:80" in netdev
    assert f"tftp={tmp_path},bootfile=boot.ipxe" in netdev
    assert "virtio-net-pci,netdev=net0,bootindex=0" in _opt(vm.argv(), "-device")
    assert "-nic" not in vm.argv()


def test_unknown_firmware_is_refused(tmp_path: Path) -> None:
    with pytest.raises(VMError, match="unknown firmware"):
        VM(firmware="coreboot", workdir=tmp_path).argv()  # type: ignore[arg-type]


def test_qemu_accepts_disks_cdrom_network_and_fw_cfg(
        vm_factory: Callable[..., VM], tmp_path: Path) -> None:
    raw = tmp_path / "a.raw"
    raw.write_bytes(b"\0" * (1 << 20))
    qcow = tmp_path / "b.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(qcow), "64M"], check=True)
    iso = tmp_path / "c.iso"
    iso.write_bytes(b"\0" * (1 << 20))
    scsi = tmp_path / "d.raw"
    scsi.write_bytes(b"\0" * (1 << 20))
    vm = vm_factory(name="args", drives=[Drive(raw, serial="one"), Drive(qcow, snapshot=True),
                                         Drive(scsi, bus="virtio-scsi", cache="writeback")],
                    cdrom=iso, forwards=[22], tftp=tmp_path, script="true",
                    poweroff_after_check=True)
    with vm:
        blocks = {b["device"] or b["qdev"]: b for b in vm.qmp("query-block")}
        assert vm.running()
    private = tmp_path / "args-1" / "OVMF_VARS.fd"       # firmware writes here, not the template
    assert private.stat().st_size == OVMF_VARS.stat().st_size
    assert {"disk0", "disk1", "disk2", "cd0"} <= set(blocks)
    assert blocks["disk2"]["inserted"]["cache"]["writeback"] is True
    assert blocks["disk2"]["inserted"]["cache"]["no-flush"] is False    # not cache=unsafe
    assert blocks["disk0"]["inserted"]["cache"]["no-flush"] is True     # the default: unsafe
    assert blocks["cd0"]["removable"] is True
    assert not vm.running()


def test_a_deep_workdir_gets_a_qmp_socket_that_can_be_connected_to(
        vm_factory: Callable[..., VM], tmp_path: Path) -> None:
    """A socket path past sun_path's 108 bytes cannot be connected to (it failed a VM test
    whose workdir had a long name): such a VM's QMP socket lives in a short /tmp dir, removed
    with the VM."""
    deep = tmp_path / ("w" * 60) / "taken-over-from-container-1"
    vm = vm_factory(name="deep", workdir=deep, drives=[])
    assert len(str(deep / "qmp.sock")) > 108
    with vm:
        assert vm.running() and vm.qmp("query-status")["status"] == "running"
        short = vm.qmp_socket.parent
        assert len(str(vm.qmp_socket)) < 60 and str(short).startswith("/tmp/bpy-qmp-")
    assert not short.exists()


def test_a_serial_console_that_takes_input_still_logs_and_starts(
        vm_factory: Callable[..., VM], tmp_path: Path) -> None:
    """serial_input: the console is a socket qemu waits on before it starts (so no output is
    lost), its output still lands in serial.log; without it the console takes no input."""
    vm = vm_factory(name="typing", drives=[], serial_input=True, firmware="bios")
    chardev = _opt(vm.argv(), "-chardev")[0]
    assert chardev.startswith("socket,id=serial0,") and "server=on,wait=on" in chardev
    assert f"logfile={vm.serial_log}" in chardev
    with vm:
        assert vm.qmp("query-status")["status"] == "running"
        vm.send_serial("2\n")
        chardevs = {c["label"]: c for c in vm.qmp("query-chardev")}
        assert chardevs["serial0"]["frontend-open"] is True
    assert vm.serial_log.exists() and not vm.serial_socket.exists()
    plain = vm_factory(name="plain", drives=[], firmware="bios")
    with plain, pytest.raises(VMError, match="the serial console takes no input"):
        plain.send_serial("2\n")


def test_pause_at_shutdown_keeps_qmp_after_the_machine_shuts_down(
        vm_factory: Callable[..., VM]) -> None:
    """pause_at_shutdown: a reboot (here a reset, which -no-reboot turns into a shutdown as
    it does the guest's) leaves qemu paused in `shutdown`, still answering QMP; without it
    wait_shutdown is refused."""
    vm = vm_factory(name="pause", drives=[], firmware="bios", pause_at_shutdown=True)
    assert "shutdown=pause" in _opt(vm.argv(), "-action")
    with vm:
        assert vm.qmp("query-status")["status"] == "running"
        vm.qmp("system_reset")
        vm.wait_shutdown(30)
        assert vm.running() and vm.qmp("query-status")["running"] is False
    plain = vm_factory(name="plain2", drives=[], firmware="bios")
    assert "-action" not in plain.argv()
    with plain, pytest.raises(VMError, match="needs VM\\(pause_at_shutdown=True\\)"):
        plain.wait_shutdown(1)


def test_closing_a_running_vm_quits_qemu_over_qmp(vm_factory: Callable[..., VM]) -> None:
    """A VM closed while its guest still runs ends with QMP `quit` (exit status 0); QMP used
    to be closed first, so every such close waited 10 s and then SIGKILLed qemu (-9)."""
    vm = vm_factory(name="quit", drives=[], firmware="bios")
    with vm:
        assert vm.running()
    assert vm.proc is not None and vm.proc.returncode == 0
