"""`reboot --eject` for the live installer: open the CD tray at the last moment of the shutdown.

The live root is a squashfs read from the CD, so the CD cannot be ejected while the live system
runs (the kernel refuses CDROMEJECT on a device that is in use, and anything read after it
would fail). systemd-shutdown runs the executables in /usr/lib/systemd/system-shutdown/ just
before it reboots, when nothing else runs; the live installer writes one there (the live root
is a writable overlay) that runs this module. It sends the drive ALLOW MEDIUM REMOVAL and
START STOP UNIT with LoEj through SG_IO, which the drive obeys whatever the kernel's open
count says, as Anaconda's `eject` does. Nothing of the live root is read after it.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import sys
from pathlib import Path

SG_IO = 0x2285
SG_DXFER_NONE = -1
SG_INFO_OK_MASK = 0x1
# SCSI commands (SPC/MMC): unlock the tray, then stop the unit and eject (LoEj=1, Start=0).
ALLOW_MEDIUM_REMOVAL = bytes([0x1E, 0, 0, 0, 0, 0])
START_STOP_EJECT = bytes([0x1B, 0, 0, 0, 0x02, 0])
TIMEOUT_MS = 10_000
SCSI_TYPE_ROM = 5  # /sys/block/<dev>/device/type of a CD/DVD drive
HOOK = Path("/usr/lib/systemd/system-shutdown/bootc-py-eject")


class SgIoHdr(ctypes.Structure):
    """struct sg_io_hdr from <scsi/sg.h>."""

    _fields_ = [
        ("interface_id", ctypes.c_int), ("dxfer_direction", ctypes.c_int),
        ("cmd_len", ctypes.c_ubyte), ("mx_sb_len", ctypes.c_ubyte),
        ("iovec_count", ctypes.c_ushort), ("dxfer_len", ctypes.c_uint),
        ("dxferp", ctypes.c_void_p), ("cmdp", ctypes.c_void_p), ("sbp", ctypes.c_void_p),
        ("timeout", ctypes.c_uint), ("flags", ctypes.c_uint), ("pack_id", ctypes.c_int),
        ("usr_ptr", ctypes.c_void_p), ("status", ctypes.c_ubyte),
        ("masked_status", ctypes.c_ubyte), ("msg_status", ctypes.c_ubyte),
        ("sb_len_wr", ctypes.c_ubyte), ("host_status", ctypes.c_ushort),
        ("driver_status", ctypes.c_ushort), ("resid", ctypes.c_int),
        ("duration", ctypes.c_uint), ("info", ctypes.c_uint),
    ]


def is_cdrom(device: str, sys_block: Path = Path("/sys/block")) -> bool:
    """Whether `device` (/dev/sr0) is an optical drive: a USB stick or a disk has no tray."""
    name = Path(os.path.realpath(device)).name
    try:
        return int((sys_block / name / "device/type").read_text()) == SCSI_TYPE_ROM
    except (OSError, ValueError):
        return False


def _command(fd: int, cdb: bytes) -> None:
    cmd = ctypes.create_string_buffer(cdb, len(cdb))
    sense = ctypes.create_string_buffer(32)
    hdr = SgIoHdr(interface_id=ord("S"), dxfer_direction=SG_DXFER_NONE, cmd_len=len(cdb),
                  mx_sb_len=len(sense), cmdp=ctypes.addressof(cmd),
                  sbp=ctypes.addressof(sense), timeout=TIMEOUT_MS)
    fcntl.ioctl(fd, SG_IO, hdr)
    if hdr.info & SG_INFO_OK_MASK:
        key = sense.raw[2] & 0x0F if hdr.sb_len_wr > 2 else None
        raise OSError(f"SCSI command 0x{cdb[0]:02x} failed (status 0x{hdr.status:02x}, "
                      f"host 0x{hdr.host_status:x}, driver 0x{hdr.driver_status:x}, "
                      f"sense key {key})")


def eject(device: str) -> None:
    """Unlock the tray and eject the medium of the drive `device`."""
    fd = os.open(device, os.O_RDONLY | os.O_NONBLOCK)
    try:
        _command(fd, ALLOW_MEDIUM_REMOVAL)
        _command(fd, START_STOP_EJECT)
    finally:
        os.close(fd)


def hook_script(device: str) -> str:
    return ("#!/bin/sh\n"
            "# Written by bootc-py's live installer: the kickstart said --eject.\n"
            "# systemd-shutdown runs this right before the reboot or power-off,\n"
            "# when nothing reads the CD any more.\n"
            f"exec /usr/bin/python3 -m bootc_py.installer.eject {device}\n")


def arm(device: str, hook: Path = HOOK) -> None:
    """Have systemd-shutdown eject `device` at the end of this shutdown."""
    hook.parent.mkdir(parents=True, exist_ok=True)
    tmp = hook.with_name(f".{hook.name}.tmp")
    tmp.write_text(hook_script(device))
    tmp.chmod(0o755)
    tmp.replace(hook)


def _say(message: str, console: Path) -> None:
    # systemd-shutdown's hooks have no journal any more: the console is what is left.
    try:
        with open(console, "w") as out:
            out.write(message + "\n")
    except OSError:
        print(message, file=sys.stderr)


def main(argv: list[str], console: Path = Path("/dev/console")) -> int:
    if len(argv) != 1:
        print("usage: python3 -m bootc_py.installer.eject DEVICE", file=sys.stderr)
        return 2
    try:
        eject(argv[0])
    except OSError as exc:
        _say(f"bootc-py: could not eject {argv[0]}: {exc}", console)
        return 1
    _say(f"bootc-py: ejected {argv[0]}", console)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
