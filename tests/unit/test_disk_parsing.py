"""Pure pieces of disk/: /proc parsers, device names, mkfs command lines, the mtools wrapper's
parsing (with a fake run()), and the rule that only discover.py imports pyudev."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from bootc_py.disk import esp as esp_mod
from bootc_py.disk.apply import partition_path
from bootc_py.disk.discover import parse_export, parse_mountinfo, parse_swaps
from bootc_py.disk.esp import Esp
from bootc_py.disk.mkfs import MKFS, mkfs_argv
from bootc_py.disk.model import GiB, MiB, human_size
from bootc_py.errors import DiskError, UsageError

SRC = Path(__file__).resolve().parents[2] / "src" / "bootc_py"

MOUNTINFO = """\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
45 22 259:5 / /mnt/with\\040space rw,relatime shared:30 - xfs /dev/loop0p4 rw,attr2
46 45 0:52 /@ /mnt/btr rw - btrfs /dev/loop1p4 rw,space_cache=v2
47 22 0:5 / /dev rw,nosuid - devtmpfs udev rw
"""


def test_parse_mountinfo() -> None:
    lines = parse_mountinfo(MOUNTINFO)
    assert [(m.majmin, m.mountpoint, m.fstype, m.source) for m in lines] == [
        ((254, 0), "/", "ext4", "/dev/vda"),
        ((259, 5), "/mnt/with space", "xfs", "/dev/loop0p4"),
        ((0, 52), "/mnt/btr", "btrfs", "/dev/loop1p4"),
        ((0, 5), "/dev", "devtmpfs", "udev"),
    ]
    assert lines[2].root == "/@"


def test_parse_swaps() -> None:
    text = ("Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
            "/dev/loop0p3                            partition\t1048572\t\t0\t\t-2\n"
            "/mnt/a\\040b/swapfile                    file\t\t16380\t\t0\t\t-3\n")
    assert parse_swaps(text) == ["/dev/loop0p3", "/mnt/a b/swapfile"]
    assert parse_swaps("Filename\tType\tSize\tUsed\tPriority\n") == []


def test_parse_export() -> None:
    text = "DEVNAME=/dev/loop0p2\nLABEL=EFI-SYSTEM\nUUID=1337-D188\nTYPE=vfat\n"
    assert parse_export(text) == {"DEVNAME": "/dev/loop0p2", "LABEL": "EFI-SYSTEM",
                                  "UUID": "1337-D188", "TYPE": "vfat"}


@pytest.mark.parametrize(("device", "number", "expected"), [
    ("/dev/sda", 1, "/dev/sda1"),
    ("/dev/vdb", 4, "/dev/vdb4"),
    ("/dev/nvme0n1", 2, "/dev/nvme0n1p2"),
    ("/dev/loop7", 3, "/dev/loop7p3"),
    ("/dev/mmcblk0", 1, "/dev/mmcblk0p1"),
    ("/dev/md127", 1, "/dev/md127p1"),
])
def test_partition_path(device: str, number: int, expected: str) -> None:
    assert partition_path(Path(device), number) == Path(expected)


def test_mkfs_command_lines() -> None:
    dev = Path("/dev/loop0p4")
    assert mkfs_argv(Path("/dev/loop0p2"), "vfat", "EFI-SYSTEM") == [
        "mkfs.vfat", "-F", "32", "-n", "EFI-SYSTEM", "/dev/loop0p2"]
    assert mkfs_argv(dev, "ext4", "boot") == ["mkfs.ext4", "-F", "-q", "-L", "boot", str(dev)]
    assert mkfs_argv(dev, "xfs", "root") == ["mkfs.xfs", "-f", "-q", "-L", "root", str(dev)]
    assert mkfs_argv(dev, "btrfs", "root") == ["mkfs.btrfs", "-f", "-q", "-L", "root", str(dev)]
    assert mkfs_argv(dev, "xfs") == ["mkfs.xfs", "-f", "-q", str(dev)]
    assert mkfs_argv(dev, "swap") == ["mkswap", "-q", str(dev)]
    assert sorted(MKFS) == ["btrfs", "ext4", "swap", "vfat", "xfs"]
    with pytest.raises(UsageError, match="unknown filesystem 'ntfs'"):
        mkfs_argv(dev, "ntfs")


@pytest.mark.parametrize(("n", "text"), [
    (0, "0 B"), (512, "512 B"), (MiB, "1 MiB"), (512 * MiB, "512 MiB"), (GiB, "1 GiB"),
    (3 * GiB // 2, "1.5 GiB"), (2051 * MiB, "2051 MiB"), (20 * GiB - 3 * MiB, "20.0 GiB"),
])
def test_human_size(n: int, text: str) -> None:
    assert human_size(n) == text


def test_only_discover_imports_pyudev() -> None:
    importers = sorted(
        str(p.relative_to(SRC)) for p in SRC.rglob("*.py")
        if re.search(r"^\s*(import pyudev|from pyudev)", p.read_text(), re.M))
    assert importers == ["disk/discover.py"]


# -- the mtools wrapper, against recorded mtools output -------------------------------------

NOISE = "Could not get geometry of device (Inappropriate ioctl for device)"


class FakeMtools:
    """Answers mdir/mmd like mtools did on a real ESP holding /EFI/BOOT/BOOTX64.EFI."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.dirs = {"/": ["EFI/"], "/EFI": ["BOOT/", "Linux/"], "/EFI/BOOT": ["BOOTX64.EFI"],
                     "/EFI/Linux": []}

    def __call__(self, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        args = [str(a) for a in argv]
        self.calls.append(args)
        assert kwargs.get("env") == {"MTOOLS_SKIP_CHECK": "1"}
        assert args[1:3] == ["-i", "/dev/loop0p2"]
        tool, rest = args[0], args[3:]
        if tool == "mdir" and rest[:2] == ["-b", "-a"]:
            path = rest[2].removeprefix("::")
            key = next((k for k in self.dirs if k.lower() == path.lower()), None)
            if key is None:
                parent, _, name = path.rpartition("/")
                entries = self.dirs.get(parent or "/", [])
                if name.lower() in (e.lower() for e in entries):
                    return self._ok(f"::{path}\n")
                return subprocess.CompletedProcess(args, 1, "", f'{NOISE}mdir: File "::{path}" '
                                                   "not found\n")
            prefix = path.rstrip("/") + "/"
            return self._ok("".join(f"::{prefix}{e}\n" for e in self.dirs[key]))
        if tool == "mdir":
            return self._ok(" Volume in drive : is EFI-SYSTEM\nDirectory for ::/\n\n"
                            "EFI          <DIR>     2024-01-01  10:00\n"
                            "        1 file                    0 bytes\n"
                            "                        535 789 568 bytes free\n\n")
        if tool == "mmd":
            return self._ok("")
        if tool == "mdel":
            return subprocess.CompletedProcess(args, 1, "", f"{NOISE}mdel: disk full\n")
        raise AssertionError(args)

    @staticmethod
    def _ok(out: str) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess([], 0, out, NOISE)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeMtools:
    fake = FakeMtools()
    monkeypatch.setattr(esp_mod, "run", fake)
    return fake


def test_esp_listing_and_lookup(fake: FakeMtools) -> None:
    esp = Esp(Path("/dev/loop0p2"))
    assert esp.listdir("/") == ["EFI"]
    assert esp.listdir("EFI") == ["BOOT", "Linux"]
    assert esp.is_dir("/efi/boot") and esp.exists("/EFI/BOOT/bootx64.efi")
    assert not esp.is_dir("/EFI/BOOT/BOOTX64.EFI")
    assert not esp.exists("/EFI/systemd")
    assert esp.free_bytes() == 535789568


def test_esp_mkdir_creates_only_missing_parents(fake: FakeMtools) -> None:
    Esp(Path("/dev/loop0p2")).mkdir("/EFI/systemd/drivers")
    made = [c[3] for c in fake.calls if c[0] == "mmd"]
    assert made == ["::/EFI/systemd", "::/EFI/systemd/drivers"]


def test_esp_errors_drop_the_geometry_noise(fake: FakeMtools) -> None:
    with pytest.raises(DiskError) as err:
        Esp(Path("/dev/loop0p2")).remove("/EFI/BOOT/BOOTX64.EFI")
    assert err.value.message == "mdel on /dev/loop0p2 failed: mdel: disk full"
    with pytest.raises(DiskError, match="is not a directory"):
        Esp(Path("/dev/loop0p2")).listdir("/nope")
    with pytest.raises(DiskError, match="exists and is not a directory"):
        Esp(Path("/dev/loop0p2")).mkdir("/EFI/BOOT/BOOTX64.EFI/x")


def test_esp_paths_stay_inside(fake: FakeMtools) -> None:
    with pytest.raises(UsageError):
        Esp(Path("/dev/loop0p2")).exists("/EFI/../../etc")
