"""The sample image's check unit (vm-fixtures/guest/check.py): its mount facts come from one
findmnt listing, and must say what `findmnt -T PATH` says for each path."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

CHECK = Path(__file__).resolve().parents[2] / "vm-fixtures/guest/check.py"


def load_check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("guest_check", CHECK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check = load_check()

TABLE = [
    {"target": "/", "source": "/dev/vda4[/ostree/deploy/default/deploy/abc.0]",
     "fstype": "xfs", "options": "rw"},
    {"target": "/usr", "source": "/dev/vda4[/ostree/deploy/default/deploy/abc.0/usr]",
     "fstype": "xfs", "options": "ro"},
    {"target": "/boot", "source": "/dev/vda3", "fstype": "ext4", "options": "rw"},
    {"target": "/usr", "source": "overlay", "fstype": "overlay", "options": "rw"},
    {"target": "/boot/efi", "source": "/dev/vda2", "fstype": "vfat", "options": "rw"},
]


@pytest.mark.parametrize(("path", "source"), [
    ("/", "/dev/vda4[/ostree/deploy/default/deploy/abc.0]"),
    ("/etc", "/dev/vda4[/ostree/deploy/default/deploy/abc.0]"),  # not a mount point
    ("/usr", "overlay"),                                           # the top of the stack
    ("/usr/share", "overlay"),
    ("/boot", "/dev/vda3"),
    ("/boot/efi", "/dev/vda2"),
    ("/bootx", "/dev/vda4[/ostree/deploy/default/deploy/abc.0]"),  # a prefix, not a parent
])
def test_the_mount_a_path_shows(path: str, source: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(check.os.path, "realpath", lambda p: p)
    fs = check.mount_of(path, TABLE)
    assert fs is not None and fs["source"] == source


@pytest.mark.host_tools  # findmnt, read-only
@pytest.mark.parametrize("path", ["/", "/proc", "/dev", "/tmp", "/sys/fs/cgroup",
                                  str(Path(__file__).parent)])
def test_the_listing_agrees_with_findmnt_on_this_machine(path: str) -> None:
    table = check.mount_table()
    assert table is not None
    out = subprocess.run(["findmnt", "-J", "-T", path, "-o", "TARGET,SOURCE,FSTYPE,OPTIONS"],
                         capture_output=True, text=True, check=True).stdout
    assert check.mount_of(path, table) == json.loads(out)["filesystems"][-1]
