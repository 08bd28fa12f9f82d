"""One cold boot of a qemu TCG virtual machine, as a context manager.

    with VM(drives=[Drive(disk)], firmware="uefi", workdir=tmp) as vm:
        facts = vm.check()          # the guest's BOOTC-PY-CHECK JSON

Every boot is cold (`-no-reboot`: a guest reboot ends qemu; start a new VM to boot again).
The serial console goes to `workdir/serial.log`; the check unit's report also arrives on a
virtio-serial port (`workdir/check.port`), clean of console noise. Per-boot requests to the
guest (a shell snippet to run, power off after reporting) travel through fw_cfg.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from vmharness.errors import VMError, VMExited, VMTimeout

# sun_path holds 108 bytes with the terminating NUL.
UNIX_PATH_MAX = 107

Firmware = Literal["uefi", "bios"]
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
CHECK_MARKER = "BOOTC-PY-CHECK"
CHECK_PORT = "org.bootc-py.check"
FW_CFG_PREFIX = "opt/bootc-py"
ANSI = re.compile(r"\x1b(\[[0-9;?]*[A-Za-z]|[()][A-Z0-9]|[=>c])")
# Generous: boots share two cores with other work. Scale with BOOTC_PY_VM_TIMEOUT_SCALE.
DEFAULT_CHECK_TIMEOUT = 480.0
RELAY = Path(__file__).resolve().parent / "relay.py"
# A TCG guest kernel now and then stops making progress before it starts init (seen: silent
# for 480 s after "pnp: PnP ACPI: found 5 devices", -smp 2). Nothing has touched the disks
# yet at that point, so the harness kills qemu and boots again cold, once. A kernel under
# TCG reaches init in 6-10 s; 90 s of silence after its first line is a stall, not slowness.
KERNEL_STALL_S = 90.0
KERNEL_LINE = re.compile(r"Linux version \d|\[\s*\d+\.\d+\] ")
INIT_LINES = ("Run /init", "Run /sbin/init", "Freeing unused kernel", "systemd[1]:",
              "Welcome to", "dracut")
FORMATS = {".qcow2": "qcow2", ".vmdk": "vmdk", ".vhd": "vpc", ".vpc": "vpc", ".vhdx": "vhdx"}


def scaled(timeout: float) -> float:
    return timeout * float(os.environ.get("BOOTC_PY_VM_TIMEOUT_SCALE", "1"))


@dataclass(frozen=True)
class Drive:
    """A virtio disk. `snapshot` keeps the file untouched (writes go to a throwaway overlay)."""

    path: Path
    format: str | None = None          # raw, qcow2, vmdk, vpc; default from the suffix
    serial: str | None = None          # /dev/disk/by-id/virtio-<serial> in the guest
    readonly: bool = False
    snapshot: bool = False
    bus: Literal["virtio-blk", "virtio-scsi"] = "virtio-blk"   # vda or sda in the guest
    # unsafe: the host never syncs (a test disk is thrown away; the guest's own flushes still
    # order its writes). writeback/none/directsync for measuring (vm-fixtures/README.md).
    cache: str = "unsafe"

    @property
    def fmt(self) -> str:
        return self.format or FORMATS.get(Path(self.path).suffix, "raw")


@dataclass(frozen=True)
class Forward:
    """A host 127.0.0.1 port forwarded to a guest TCP port (`host_port=0`: pick a free one)."""

    guest_port: int
    host_port: int = 0


@dataclass(frozen=True)
class GuestForward:
    """The guest's connections to `guest_addr:guest_port` relayed to a server on the host's
    127.0.0.1:`host_port` (qemu guestfwd with one relay process per connection: FACTS §11).
    With `log`, the relay appends each HTTP request line the guest sends to that file."""

    host_port: int
    guest_port: int = 5000
    guest_addr: str = "10.0.2.100"
    log: Path | None = None

    def netdev_option(self) -> str:
        cmd = f"{sys.executable} {RELAY} 127.0.0.1 {self.host_port}"
        if self.log is not None:
            cmd += f" {self.log}"
        if "," in cmd:
            raise VMError(f"guestfwd command must not contain a comma: {cmd}")
        return f"guestfwd=tcp:{self.guest_addr}:{self.guest_port}-cmd:{cmd}"


def default_cpus() -> int:
    """vCPUs per guest: BOOTC_PY_VM_CPUS, else 2 (the test suite sets 1 per xdist worker
    so two guests side by side each keep one of the two cores)."""
    return int(os.environ.get("BOOTC_PY_VM_CPUS", "2"))


def default_cpu_model() -> str:
    """qemu -cpu: BOOTC_PY_VM_CPU_MODEL, else qemu64. Under TCG the plain x86-64 model costs
    less emulation than `max` (whose AVX/SSE4 paths glibc, zlib and OpenSSL pick and TCG
    emulates slowly): an in-guest install 16% and a boot's qemu CPU time 23% less
    (vm-fixtures/README.md, "Boot time")."""
    return os.environ.get("BOOTC_PY_VM_CPU_MODEL", "qemu64")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class VM:
    def __init__(
        self,
        *,
        drives: Sequence[Drive | Path | str] = (),
        firmware: Firmware = "uefi",
        cdrom: Path | str | None = None,
        kernel: Path | str | None = None,
        initrd: Path | str | None = None,
        append: str | None = None,
        boot: Literal["auto", "disk", "cdrom", "net"] = "auto",
        tftp: Path | str | None = None,
        bootfile: str | None = None,
        network: bool = False,
        forwards: Sequence[Forward | int] = (),
        guest_forwards: Sequence[GuestForward] = (),
        memory_mb: int = 2048,
        cpus: int | None = None,
        script: str | None = None,
        poweroff_after_check: bool = False,
        uefi_vars: Path | str | None = None,
        workdir: Path | str | None = None,
        name: str = "vm",
        extra_args: Sequence[str] = (),
        qemu: str = "qemu-system-x86_64",
        kernel_stall_s: float | None = KERNEL_STALL_S,
        serial_input: bool = False,
        pause_at_shutdown: bool = False,
        cpu_model: str | None = None,
    ) -> None:
        self.drives = [d if isinstance(d, Drive) else Drive(Path(d)) for d in drives]
        self.firmware = firmware
        self.cdrom = Path(cdrom) if cdrom else None
        self.kernel = Path(kernel) if kernel else None
        self.initrd = Path(initrd) if initrd else None
        self.append = append
        self.boot = boot
        self.tftp = Path(tftp) if tftp else None
        self.bootfile = bootfile
        self.forwards = [f if isinstance(f, Forward) else Forward(f) for f in forwards]
        self.guest_forwards = list(guest_forwards)
        self.network = (network or bool(self.forwards) or bool(self.guest_forwards)
                        or self.tftp is not None or boot == "net")
        self.memory_mb = memory_mb
        self.cpus = cpus or default_cpus()
        self.cpu_model = cpu_model or default_cpu_model()
        self.kernel_stall_s = kernel_stall_s
        self.restarts = 0                 # cold restarts after a kernel stall (at most one)
        self._seen_size = -1
        self._seen_at = 0.0
        self.script = script
        self.poweroff_after_check = poweroff_after_check
        self.name = name
        self.extra_args = list(extra_args)
        self.qemu = qemu
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="bootc-py-vm-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.uefi_vars = Path(uefi_vars) if uefi_vars else self.workdir / "OVMF_VARS.fd"
        self.serial_log = self.workdir / "serial.log"
        self.check_port = self.workdir / "check.port"
        self.qemu_log = self.workdir / "qemu.log"
        self.qmp_socket = self.workdir / "qmp.sock"
        # Typing on the serial console (send_serial): the port is a socket qemu waits on,
        # drained by a thread; what the guest writes still lands in serial.log (logfile=).
        self.serial_input = serial_input
        # The guest's reboot or power-off pauses qemu instead of ending it, so a test can
        # still ask QMP about the machine's last state (a CD tray the guest opened); see
        # wait_shutdown().
        self.pause_at_shutdown = pause_at_shutdown
        self._serial_sock: socket.socket | None = None
        self.host_ports: dict[int, int] = {}
        self.events: list[dict[str, Any]] = []
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self._short_dir: Path | None = None
        if len(os.fsencode(self.qmp_socket)) > UNIX_PATH_MAX:
            # A deep workdir (pytest's tmp_path + a long test name): a socket path past
            # sun_path's 108 bytes cannot be connected to, so the socket lives in /tmp.
            self._short_dir = Path(tempfile.mkdtemp(prefix="bpy-qmp-", dir="/tmp"))
            self.qmp_socket = self._short_dir / "qmp.sock"
        self.serial_socket = self.qmp_socket.with_name("serial.sock")
        self._qmp: Any = None
        self._stack = contextlib.ExitStack()

    # ---- command line -------------------------------------------------------------------

    def argv(self) -> list[str]:
        """The qemu command line (files it names are prepared by start())."""
        a = [self.qemu, "-name", self.name, "-accel", "tcg", "-machine", "q35",
             "-cpu", self.cpu_model,
             "-m", str(self.memory_mb), "-smp", str(self.cpus), "-display", "none",
             "-vga", "none", "-monitor", "none", "-no-reboot", "-nodefaults",
             "-chardev", self._serial_chardev(), "-serial", "chardev:serial0",
             "-qmp", f"unix:{self.qmp_socket},server=on,wait=off",
             "-device", "virtio-serial-pci,id=vser0",
             "-chardev", f"file,id=checkport,path={self.check_port}",
             "-device", f"virtserialport,bus=vser0.0,chardev=checkport,name={CHECK_PORT}",
             "-device", "virtio-rng-pci"]
        if self.pause_at_shutdown:
            a += ["-action", "shutdown=pause"]  # -no-reboot makes a reboot a shutdown too
        if self.firmware == "uefi":
            a += ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
                  "-drive", f"if=pflash,format=raw,unit=1,file={self.uefi_vars}"]
        elif self.firmware != "bios":
            raise VMError(f"unknown firmware {self.firmware!r} (uefi or bios)")
        order = {"auto": ("cdrom", "disk", "net"), "disk": ("disk", "cdrom", "net"),
                 "cdrom": ("cdrom", "disk", "net"), "net": ("net", "disk", "cdrom")}[self.boot]
        index = 1 if self.kernel else 0     # -kernel's option ROM takes boot index 0
        for kind in order:
            if kind == "cdrom" and self.cdrom:
                a += ["-device", "virtio-scsi-pci,id=scsi0",
                      "-drive", f"if=none,id=cd0,media=cdrom,readonly=on,format=raw,"
                                f"file={self.cdrom}",
                      "-device", f"scsi-cd,bus=scsi0.0,drive=cd0,bootindex={index}"]
                index += 1
            elif kind == "disk":
                for i, d in enumerate(self.drives):
                    opts = [f"if=none,id=disk{i}", f"format={d.fmt}", f"file={d.path}",
                            f"cache={d.cache}", "discard=unmap"]
                    if d.readonly:
                        opts.append("readonly=on")
                    if d.snapshot:
                        opts.append("snapshot=on")
                    if d.bus == "virtio-scsi":
                        a += ["-device", f"virtio-scsi-pci,id=dscsi{i}"]
                        dev = f"scsi-hd,bus=dscsi{i}.0,drive=disk{i},bootindex={index}"
                    else:
                        dev = f"virtio-blk-pci,drive=disk{i},bootindex={index}"
                    if d.serial:
                        dev += f",serial={d.serial}"
                    a += ["-drive", ",".join(opts), "-device", dev]
                    index += 1
            elif kind == "net" and self.network:
                a += self._net_args(index if self.boot == "net" else None)
                if self.boot == "net":
                    index += 1
        if not self.network:
            a += ["-nic", "none"]
        if self.kernel:
            a += ["-kernel", str(self.kernel)]
            if self.initrd:
                a += ["-initrd", str(self.initrd)]
            if self.append is not None:
                a += ["-append", self.append]
        if self.script is not None:
            a += ["-fw_cfg", f"name={FW_CFG_PREFIX}/script,file={self.workdir / 'script.sh'}"]
        if self.poweroff_after_check:
            a += ["-fw_cfg", f"name={FW_CFG_PREFIX}/poweroff,string=1"]
        return a + self.extra_args

    def _serial_chardev(self) -> str:
        if not self.serial_input:
            return f"file,id=serial0,path={self.serial_log}"
        return (f"socket,id=serial0,path={self.serial_socket},server=on,wait=on,"
                f"logfile={self.serial_log}")

    def _net_args(self, bootindex: int | None) -> list[str]:
        netdev = "user,id=net0,restrict=on"
        for f in self.forwards:
            host = self.host_ports.setdefault(f.guest_port, f.host_port or free_port())
            netdev += f",hostfwd=tcp:127.0.0.1:{host}-:{f.guest_port}"
        for g in self.guest_forwards:
            netdev += "," + g.netdev_option()
        if self.tftp:
            netdev += f",tftp={self.tftp}"
        if self.bootfile:  # a TFTP file name, or a URL iPXE fetches (http through a relay)
            netdev += f",bootfile={self.bootfile}"
        dev = "virtio-net-pci,netdev=net0"
        if bootindex is not None:
            dev += f",bootindex={bootindex}"
        return ["-netdev", netdev, "-device", dev]

    # ---- lifecycle ----------------------------------------------------------------------

    def start(self) -> VM:
        if self.proc is not None:
            raise VMError("this VM was already started; create a new VM to boot again (cold)")
        exe = shutil.which(self.qemu)
        if not exe:
            raise VMError(f"{self.qemu} is not installed (apt-get install qemu-system-x86)")
        for needed in [d.path for d in self.drives] + [self.cdrom, self.kernel, self.initrd]:
            if needed is not None and not Path(needed).exists():
                raise VMError(f"{self.name}: no such file: {needed}")
        if self.firmware == "uefi":
            if not OVMF_CODE.exists():
                raise VMError(f"{OVMF_CODE} is missing (apt-get install ovmf)")
            if not self.uefi_vars.exists():
                shutil.copyfile(OVMF_VARS, self.uefi_vars)
        if self.script is not None:
            (self.workdir / "script.sh").write_text(self.script)
        for f in (self.serial_log, self.check_port, self.qemu_log):
            f.write_bytes(b"")
        self.qmp_socket.unlink(missing_ok=True)
        # Last in, first out: qemu is told to quit while QMP is still connected (closed
        # first, `quit` failed and every close waited 10 s for the SIGKILL).
        self._stack.callback(self._close_serial)
        self._stack.callback(self._close_qmp)
        self._stack.callback(self._terminate)
        self._launch()
        return self

    def _launch(self) -> None:
        argv = self.argv()
        (self.workdir / "qemu.argv").write_text(json.dumps(argv, indent=1))
        log = open(self.qemu_log, "wb")  # noqa: SIM115 (owned by the exit stack)
        self._stack.callback(log.close)
        self.started_at = time.monotonic()
        self._seen_size, self._seen_at = -1, self.started_at
        self._close_serial()
        self.serial_socket.unlink(missing_ok=True)
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        if self.serial_input:  # qemu waits for it before it opens QMP
            self._connect_serial()
        self._connect_qmp()

    def _kernel_stalled(self) -> bool:
        """The guest kernel printed, has not reached init, and the console has been silent
        for `kernel_stall_s`."""
        if self.kernel_stall_s is None or self.restarts or not self.running():
            return False
        try:
            size = self.serial_log.stat().st_size
        except OSError:
            return False
        now = time.monotonic()
        if size != self._seen_size:
            self._seen_size, self._seen_at = size, now
            return False
        if now - self._seen_at < scaled(self.kernel_stall_s):
            return False
        text = ANSI.sub("", self.serial_text())
        if "Kernel panic" in text:
            return False             # a real failure: the test sees it, a restart would hide it
        return bool(KERNEL_LINE.search(text)) and not any(m in text for m in INIT_LINES)

    def _restart_if_kernel_stalled(self) -> bool:
        """Restart qemu cold after a kernel stall; True when it did (waits start over)."""
        if not self._kernel_stalled():
            return False
        assert self.proc is not None
        stalled_for = time.monotonic() - self._seen_at
        print(f"vmharness: {self.name}: the guest kernel stalled before init (console silent "
              f"{stalled_for:.0f} s after: {self.serial_tail(1)!r}); killing qemu and booting "
              "again cold (kept in serial.stalled.log)", file=sys.stderr)
        self._close_qmp()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        shutil.copyfile(self.serial_log, self.workdir / "serial.stalled.log")
        for f in (self.serial_log, self.check_port):
            f.write_bytes(b"")
        self.qmp_socket.unlink(missing_ok=True)
        self.restarts += 1
        self._launch()
        return True

    def _connect_qmp(self) -> None:
        from qemu.qmp.legacy import QEMUMonitorProtocol

        deadline = time.monotonic() + 30
        while not self.qmp_socket.exists():
            self._raise_if_exited("its QMP socket")
            if time.monotonic() > deadline:
                raise VMError(f"{self.name}: qemu did not open its QMP socket in 30 s"
                              + self._qemu_log_tail())
            time.sleep(0.05)
        qmp = QEMUMonitorProtocol(str(self.qmp_socket))
        for _ in range(100):
            try:
                qmp.connect()
                break
            except Exception:  # qemu.qmp raises ConnectError, OSError, EOFError...
                time.sleep(0.2)
                self._raise_if_exited("its QMP socket")
        else:
            raise VMError(f"{self.name}: cannot connect to qemu's QMP socket")
        self._qmp = qmp

    def _connect_serial(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            self._raise_if_exited("its serial socket")
            try:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.connect(str(self.serial_socket))
                break
            except OSError:
                sock.close()
                if time.monotonic() > deadline:
                    raise VMError(f"{self.name}: qemu did not open its serial socket in 30 s"
                                  + self._qemu_log_tail()) from None
                time.sleep(0.05)
        self._serial_sock = sock
        # The guest's output is in serial.log already; reading it here only keeps the
        # socket from filling up (a full socket would stall the guest's console).
        threading.Thread(target=_drain, args=(sock,), daemon=True,
                         name=f"{self.name}-serial").start()

    def _close_serial(self) -> None:
        if self._serial_sock is not None:
            with contextlib.suppress(OSError):
                self._serial_sock.shutdown(socket.SHUT_RDWR)
            self._serial_sock.close()
            self._serial_sock = None
        if self.serial_input:
            self.serial_socket.unlink(missing_ok=True)

    def send_serial(self, text: str) -> None:
        """Type `text` on the guest's serial console (needs VM(serial_input=True))."""
        if self._serial_sock is None:
            raise VMError(f"{self.name}: the serial console takes no input: start the VM "
                          "with serial_input=True")
        self._serial_sock.sendall(text.encode())

    def _close_qmp(self) -> None:
        if self._qmp is not None:
            with contextlib.suppress(Exception):
                self._qmp.close()
            self._qmp = None

    def qmp(self, command: str, **args: Any) -> Any:
        """Run a QMP command; returns its result."""
        if self._qmp is None:
            raise VMError(f"{self.name}: QMP is not connected")
        return self._qmp.cmd(command, **args)

    def pull_events(self) -> list[dict[str, Any]]:
        """QMP events received so far (also appended to `self.events`)."""
        if self._qmp is not None:
            with contextlib.suppress(Exception):
                self.events += self._qmp.get_events(wait=False)
        return self.events

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started_at if self.started_at else 0.0

    def _raise_if_exited(self, awaited: str) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise VMExited(
                f"{self.name}: qemu exited (status {self.proc.returncode}) after "
                f"{self.elapsed:.0f} s while waiting for {awaited}"
                + self._qemu_log_tail() + self._tail_block())

    def wait_exit(self, timeout: float = 120) -> int:
        """Wait for qemu to end by itself (the guest powered off); returns its status."""
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=scaled(timeout))
        except subprocess.TimeoutExpired:
            raise VMTimeout(f"{self.name}: timed out after {scaled(timeout):.0f} s waiting for "
                            "the guest to power off" + self._tail_block()) from None

    def wait_shutdown(self, timeout: float = 120) -> None:
        """With pause_at_shutdown: wait until the guest rebooted or powered off (qemu is
        paused in its `shutdown` state, QMP still answers)."""
        if not self.pause_at_shutdown:
            raise VMError(f"{self.name}: wait_shutdown needs VM(pause_at_shutdown=True)")
        deadline = time.monotonic() + scaled(timeout)
        while True:
            self._raise_if_exited("the guest's shutdown")
            if self.qmp("query-status").get("status") == "shutdown":
                return
            if time.monotonic() > deadline:
                raise VMTimeout(f"{self.name}: timed out after {scaled(timeout):.0f} s waiting "
                                "for the guest to shut down" + self._tail_block())
            time.sleep(1)

    def poweroff(self, timeout: float = 120) -> int:
        """ACPI power button, then wait; `quit` if the guest does not go down in time."""
        if not self.running():
            return self.proc.returncode if self.proc else 0
        with contextlib.suppress(Exception):
            self.qmp("system_powerdown")
        try:
            return self.wait_exit(timeout)
        except VMTimeout:
            self._terminate()
            raise

    def power_cut(self) -> None:
        """Pull the plug: SIGKILL qemu at once (no ACPI, no flush of the guest's caches).
        What the guest wrote but did not flush may be lost, as on real hardware."""
        if not self.running():
            raise VMError(f"{self.name}: qemu is not running: nothing to cut")
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def _terminate(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(Exception):
            self.qmp("quit")
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def close(self) -> None:
        self.pull_events()
        self._stack.close()
        if self._short_dir is not None:
            shutil.rmtree(self._short_dir, ignore_errors=True)

    def __enter__(self) -> VM:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # ---- serial console and the check report --------------------------------------------

    def serial_text(self) -> str:
        try:
            return self.serial_log.read_bytes().decode(errors="replace")
        except OSError:
            return ""

    def serial_tail(self, lines: int = 40) -> str:
        """The last lines of the serial console, with terminal escapes removed."""
        text = ANSI.sub("", self.serial_text()).replace("\r", "")
        tail = [ln for ln in text.splitlines() if ln.strip()][-lines:]
        return "\n".join(tail)

    def _tail_block(self, lines: int = 30) -> str:
        tail = self.serial_tail(lines)
        body = tail if tail else "(nothing on the serial console)"
        return f"\n--- last serial console lines ({self.serial_log}) ---\n{body}\n---"

    def _qemu_log_tail(self) -> str:
        try:
            text = self.qemu_log.read_text(errors="replace").strip()
        except OSError:
            return ""
        return f"\nqemu said: {text[-1500:]}" if text else ""

    def wait_for(self, pattern: str | re.Pattern[str], timeout: float,
                 what: str | None = None) -> re.Match[str]:
        """Wait until the serial console matches `pattern` (searched in the whole log)."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        awaited = what or f"/{regex.pattern}/ on the serial console"
        deadline = time.monotonic() + scaled(timeout)
        while True:
            m = regex.search(ANSI.sub("", self.serial_text()))
            if m:
                return m
            self._raise_if_exited(awaited)
            if self._restart_if_kernel_stalled():
                deadline = time.monotonic() + scaled(timeout)
            if time.monotonic() > deadline:
                raise VMTimeout(f"{self.name}: timed out after {scaled(timeout):.0f} s waiting "
                                f"for {awaited}" + self._tail_block())
            time.sleep(0.25)

    def _find_report(self) -> dict[str, Any] | None:
        for source in (self.check_port, self.serial_log):
            try:
                text = source.read_bytes().decode(errors="replace")
            except OSError:
                continue
            for line in reversed(text.replace("\r", "").splitlines()):
                idx = line.find(CHECK_MARKER + " {")
                if idx < 0:
                    continue
                try:
                    data: dict[str, Any] = json.loads(line[idx + len(CHECK_MARKER) + 1:])
                except ValueError:
                    continue        # cut or interleaved on the console: try the other source
                return data
        return None

    def check(self, timeout: float = DEFAULT_CHECK_TIMEOUT) -> dict[str, Any]:
        """Wait for the guest's `BOOTC-PY-CHECK {json}` report and return it parsed."""
        awaited = f"the guest's {CHECK_MARKER} report"
        deadline = time.monotonic() + scaled(timeout)
        while True:
            report = self._find_report()
            if report is not None:
                harness = report.setdefault("harness", {})
                harness["seconds_to_report"] = round(self.elapsed, 1)
                harness["restarts_after_kernel_stall"] = self.restarts
                return report
            if self.proc is not None and self.proc.poll() is not None:
                time.sleep(0.2)          # the last bytes may land just after exit
                report = self._find_report()
                if report is not None:
                    return report
            self._raise_if_exited(awaited)
            if self._restart_if_kernel_stalled():
                deadline = time.monotonic() + scaled(timeout)
            if time.monotonic() > deadline:
                raise VMTimeout(f"{self.name}: timed out after {scaled(timeout):.0f} s waiting "
                                f"for {awaited}" + self._tail_block())
            time.sleep(0.5)


def _drain(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while sock.recv(65536):
            pass
