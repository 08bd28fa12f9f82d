#!/usr/bin/python3
"""bootc-py sample image: report what the booted system looks like, as one JSON line.

Runs in the guest (bootc-py-fixture-check.service, Python standard library only). After the
boot settles (`systemctl is-system-running --wait`, bounded) it optionally runs a test's shell
snippet, collects facts and prints `BOOTC-PY-CHECK {json}` on the serial console (/dev/ttyS0)
and, when the harness attached one, on the virtio-serial port `org.bootc-py.check`.

The harness passes per-boot requests through qemu's fw_cfg (the kernel command line of an
installed disk is not the harness's to change):
  opt/bootc-py/script    a shell snippet, run before the facts are collected
  opt/bootc-py/poweroff  present: power the machine off after reporting
`bootc_py_check.poweroff` on the kernel command line asks for the power-off too.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

MARKER = "BOOTC-PY-CHECK"
PORT_NAME = "org.bootc-py.check"
FW_CFG_ROOT = Path("/sys/firmware/qemu_fw_cfg")
FW_CFG = FW_CFG_ROOT / "by_name/opt/bootc-py"
VARIANT_FILE = Path("/usr/share/bootc-py-fixture/variant")
PATHS = ("/", "/usr", "/etc", "/var", "/boot", "/boot/efi", "/sysroot")
SETTLE_TIMEOUT = 180
SCRIPT_TIMEOUT = 1200
STATUS_TIMEOUT = 180
MAX_OUTPUT = 64 * 1024


def sh(argv: list[str], timeout: float = 60) -> tuple[int, str, str]:
    """Run a program; (returncode, stdout, stderr); 127 when missing, 124 on timeout."""
    try:
        res = subprocess.run(argv, capture_output=True, text=True, errors="replace",
                             timeout=timeout, check=False)
    except FileNotFoundError:
        return 127, "", f"{argv[0]}: not found"
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout if isinstance(exc.stdout, str) else (exc.stdout or b"").decode(
            errors="replace")
        return 124, out, f"timed out after {timeout} s"
    return res.returncode, res.stdout, res.stderr


def fw_cfg(name: str) -> bytes | None:
    raw = FW_CFG / name / "raw"
    if not FW_CFG_ROOT.exists():
        sh(["modprobe", "qemu_fw_cfg"])
    try:
        return raw.read_bytes()
    except OSError:
        return None


def settle() -> dict[str, Any]:
    """Wait (bounded) until systemd has no more boot jobs; a boot that never settles is
    reported anyway, with the jobs still queued."""
    console(f"bootc-py-check: waiting up to {SETTLE_TIMEOUT} s for the boot to settle")
    t0 = time.monotonic()
    rc, out, err = sh(["systemctl", "is-system-running", "--wait"], timeout=SETTLE_TIMEOUT)
    state = out.strip().splitlines()[-1] if out.strip() else err.strip()
    facts: dict[str, Any] = {"state": state, "waited_s": round(time.monotonic() - t0, 1),
                             "jobs": []}
    if rc == 124:
        now = sh(["systemctl", "is-system-running"])[1].strip()
        facts["state"] = f"{now or 'unknown'} (not settled after {SETTLE_TIMEOUT} s)"
        _, jobs, _ = sh(["systemctl", "list-jobs", "--no-legend", "--no-pager", "--plain"])
        facts["jobs"] = [" ".join(line.split()[1:4]) for line in jobs.splitlines()
                         if line.strip()]
    return facts


def run_script(text: bytes) -> dict[str, Any]:
    d = Path("/run/bootc-py-fixture")
    d.mkdir(parents=True, exist_ok=True)
    script = d / "script.sh"
    script.write_bytes(text)
    t0 = time.monotonic()
    rc, out, err = sh(["/bin/sh", str(script)], timeout=SCRIPT_TIMEOUT)
    return {"rc": rc, "stdout": out[-MAX_OUTPUT:], "stderr": err[-MAX_OUTPUT:],
            "seconds": round(time.monotonic() - t0, 1)}


def mount_facts_of(paths: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    table = mount_table()
    return {p: mount_facts(p, table) for p in paths}


def writable(path: str) -> tuple[bool, str | None]:
    try:
        fd, name = tempfile.mkstemp(dir=path, prefix=".bootc-py-check-")
    except OSError as exc:
        return False, os.strerror(exc.errno) if exc.errno else str(exc)
    os.close(fd)
    os.unlink(name)
    return True, None


def mount_table() -> list[dict[str, Any]] | None:
    """Every mount, in mount order (one findmnt for all the paths: under TCG each process
    start costs a fraction of a second); None if findmnt fails."""
    rc, out, _ = sh(["findmnt", "-J", "--list", "-o", "TARGET,SOURCE,FSTYPE,OPTIONS"])
    if rc != 0:
        return None
    try:
        return list(json.loads(out)["filesystems"])
    except (ValueError, KeyError, TypeError):
        return None


def mount_of(path: str, table: list[dict[str, Any]]) -> dict[str, Any] | None:
    """What `findmnt -T path` shows: the mount with the longest target above the path; of
    stacked mounts (usr-overlay over the read-only /usr bind) the last, the top one."""
    real = os.path.realpath(path)
    best: dict[str, Any] | None = None
    for fs in table:
        target = str(fs.get("target") or "")
        above = real == target or target == "/" or real.startswith(target + "/")
        if above and (best is None or len(target) >= len(str(best.get("target") or ""))):
            best = fs
    return best


def mount_facts(path: str, table: list[dict[str, Any]] | None) -> dict[str, Any]:
    if not os.path.isdir(path):
        return {"exists": False}
    fs: dict[str, Any] | None = None
    err = ""
    if table is not None:
        fs = mount_of(path, table)
    if fs is None:
        rc, out, err = sh(["findmnt", "-J", "-T", path, "-o", "TARGET,SOURCE,FSTYPE,OPTIONS"])
        if rc == 0:
            fs = json.loads(out)["filesystems"][-1]  # stacked: bottom first
    facts: dict[str, Any] = {"exists": True}
    if fs is not None:
        options = fs.get("options") or ""
        facts.update(mountpoint=fs.get("target"), source=fs.get("source"),
                     fstype=fs.get("fstype"), options=options,
                     ro=("ro" in options.split(",")))
    else:
        facts["error"] = err.strip()
    facts["writable"], why = writable(path)
    if why:
        facts["write_error"] = why
    return facts


DEPLOY_RE = re.compile(
    r"^(?P<mark>[* ]) (?P<stateroot>\S+) (?P<checksum>[0-9a-f]{64})\.(?P<serial>\d+)"
    r"(?: \((?P<flags>[^)]*)\))?")


def parse_ostree_status(text: str) -> list[dict[str, Any]]:
    """`ostree admin status` (2022.7 text) -> deployments, in order, with their properties."""
    deployments: list[dict[str, Any]] = []
    for line in text.splitlines():
        m = DEPLOY_RE.match(line)
        if m:
            flags = [f.strip() for f in (m["flags"] or "").split(",") if f.strip()]
            deployments.append({
                "stateroot": m["stateroot"], "checksum": m["checksum"],
                "serial": int(m["serial"]), "booted": m["mark"] == "*", "flags": flags,
                "staged": "staged" in flags, "pending": "pending" in flags,
                "rollback": "rollback" in flags})
        elif deployments and ":" in line and line.startswith("    "):
            key, _, value = line.strip().partition(":")
            deployments[-1][key.strip().lower().replace(" ", "_")] = value.strip()
    return deployments


def ostree_facts() -> dict[str, Any]:
    facts: dict[str, Any] = {"booted": Path("/run/ostree-booted").exists()}
    if not shutil.which("ostree"):
        facts["error"] = "ostree not installed"
        return facts
    rc, out, err = sh(["ostree", "admin", "status"])
    facts["status_rc"] = rc
    facts["status_text"] = (out or err).strip()
    deployments = parse_ostree_status(out) if rc == 0 else []
    facts["deployments"] = deployments
    facts["booted_deployment"] = next((d for d in deployments if d["booted"]), None)
    return facts


def failed_units() -> list[str]:
    _, out, _ = sh(["systemctl", "list-units", "--failed", "--plain", "--no-legend",
                     "--no-pager", "--all"])
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def users() -> list[dict[str, Any]]:
    shadow: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/etc/shadow").read_text().splitlines():
            parts = line.split(":")
            if len(parts) > 1:
                shadow[parts[0]] = parts[1]
    found = []
    for line in Path("/etc/passwd").read_text().splitlines():
        parts = line.split(":")
        if len(parts) < 7:
            continue
        name, uid, home, shell = parts[0], int(parts[2]), parts[5], parts[6]
        if not (uid == 0 or 1000 <= uid < 65534):
            continue
        pw = shadow.get(name)
        state = ("unknown" if pw is None else "empty" if pw == "" else
                 "locked" if pw.startswith(("!", "*")) else "set")
        keys_file = Path(home) / ".ssh" / "authorized_keys"
        try:
            keys = [k for k in keys_file.read_text().splitlines()
                    if k.strip() and not k.startswith("#")]
        except OSError:
            keys = []
        found.append({"name": name, "uid": uid, "home": home, "home_real": os.path.realpath(home),
                      "shell": shell, "password": state, "authorized_keys": keys})
    return found


def bootc_py_status() -> dict[str, Any] | None:
    exe = shutil.which("bootc-py")
    if not exe:
        return None
    rc, out, err = sh([exe, "status", "--json"], timeout=STATUS_TIMEOUT)
    if rc == 0:
        try:
            return {"ok": True, "status": json.loads(out)}
        except ValueError as exc:
            return {"ok": False, "rc": rc, "error": f"not JSON: {exc}: {out[-2000:]}"}
    return {"ok": False, "rc": rc, "error": (err or out).strip()[-2000:]}


def read_text(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def uptime() -> float:
    return float((read_text("/proc/uptime") or "0").split()[0])


def collect(settled: dict[str, Any], script: dict[str, Any] | None) -> dict[str, Any]:
    cmdline = read_text("/proc/cmdline") or ""
    # `bootc-py status` (python + libostree) is the slowest fact under TCG: run it while the
    # others are collected.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        status = pool.submit(bootc_py_status)
        facts = _collect(settled, script, cmdline)
        facts["bootc_py"] = status.result()
    return facts


def _collect(settled: dict[str, Any], script: dict[str, Any] | None,
             cmdline: str) -> dict[str, Any]:
    return {
        "variant": read_text(str(VARIANT_FILE)),
        "cmdline": cmdline,
        "kernel": os.uname().release,
        "hostname": socket.gethostname(),
        "system_state": settled["state"],
        "settle_seconds": settled["waited_s"],
        "pending_jobs": settled["jobs"],
        "uptime_s": uptime(),
        "boot_timing": sh(["systemd-analyze", "time"])[1].strip().splitlines()[:1],
        "mounts": mount_facts_of(PATHS),
        "ostree": ostree_facts(),
        "failed_units": failed_units(),
        "users": users(),
        "machine_id": read_text("/etc/machine-id"),
        "script": script,
    }


def virtio_port() -> Path | None:
    for name_file in Path("/sys/class/virtio-ports").glob("*/name"):
        with contextlib.suppress(OSError):
            if name_file.read_text().strip() == PORT_NAME:
                return Path("/dev") / name_file.parent.name
    return None


def console(text: str) -> None:
    """A progress line on the serial console (for people reading it; tests read the JSON)."""
    with contextlib.suppress(OSError):
        fd = os.open("/dev/ttyS0", os.O_WRONLY | os.O_NOCTTY)
        try:
            os.write(fd, f"\r\n{text}\r\n".encode())
        finally:
            os.close(fd)


def has_virtio_console() -> bool:
    for dev in Path("/sys/bus/virtio/devices").glob("*/device"):
        with contextlib.suppress(OSError):
            if int(dev.read_text().strip(), 16) == 3:
                return True
    return False


def emit(line: str) -> None:
    print(line, flush=True)                     # the journal
    port = virtio_port()
    if port is None and has_virtio_console():
        sh(["modprobe", "virtio_console"])
        for _ in range(20):                      # the port device may still be appearing
            port = virtio_port()
            if port:
                break
            time.sleep(0.5)
    for dev in (Path("/dev/ttyS0"), port):
        if dev is None:
            continue
        try:
            fd = os.open(dev, os.O_WRONLY | os.O_NOCTTY)
            try:
                os.write(fd, ("\r\n" + line + "\r\n").encode())
            finally:
                os.close(fd)
        except OSError as exc:
            print(f"bootc-py-check: cannot write to {dev}: {exc}", flush=True)


def main() -> int:
    # Where the report's time goes (seconds since the kernel started): this unit started,
    # the boot settled, the test's script ended, the facts were collected.
    timing = {"check_started": uptime()}
    settled = settle()
    timing["settled"] = uptime()
    text = fw_cfg("script")
    script = run_script(text) if text is not None else None
    timing["script_done"] = uptime()
    try:
        facts = collect(settled, script)
    except Exception as exc:  # report something rather than nothing
        facts = {"error": f"{type(exc).__name__}: {exc}", "script": script}
    timing["collected"] = uptime()
    facts["check_timing"] = timing
    emit(f"{MARKER} {json.dumps(facts, sort_keys=True)}")
    cmdline = read_text("/proc/cmdline") or ""
    if fw_cfg("poweroff") is not None or "bootc_py_check.poweroff" in cmdline.split():
        sh(["systemctl", "poweroff", "--no-block"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
