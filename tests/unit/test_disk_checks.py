"""check_target on recorded disk snapshots: every refusal is one line naming the problem."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bootc_py.disk.checks import check_target, describe_contents, lvm_vg_name
from bootc_py.disk.model import DiskInfo, GiB, UseKind
from bootc_py.errors import DiskError

DATA = Path(__file__).parent / "data" / "disks"
SNAPSHOTS = sorted(p.stem for p in DATA.glob("*.json"))
MIN = 3 * GiB


def snapshot(name: str) -> DiskInfo:
    return DiskInfo.from_json((DATA / f"{name}.json").read_text())


def refusal(name: str, *, wipe: bool, min_size: int = MIN) -> DiskError:
    with pytest.raises(DiskError) as err:
        check_target(snapshot(name), wipe=wipe, min_size=min_size)
    assert "\n" not in err.value.message
    assert err.value.hint and "\n" not in err.value.hint
    return err.value


@pytest.mark.parametrize("name", ["loop-4g-empty", "disk-20g-empty", "loop-8g-4kn-empty",
                                  "nvme0n1-1tb-empty"])
@pytest.mark.parametrize("wipe", [False, True])
def test_empty_disks_are_accepted(name: str, wipe: bool) -> None:
    check_target(snapshot(name), wipe=wipe, min_size=MIN)


@pytest.mark.parametrize("name", ["loop-4g-installed", "loop-4g-whole-xfs", "loop-4g-lvm-pv"])
def test_used_disks_are_accepted_with_wipe(name: str) -> None:
    check_target(snapshot(name), wipe=True, min_size=MIN)


# (snapshot, message); each refused with and without --wipe.
BUSY = {
    "vda-running-root": ("/dev/vda holds the running system's root filesystem",
                         "never overwrites the system it runs on"),
    "loop-4g-mounted": ("/dev/loop0: /dev/loop0p4 is mounted at /run/bootc-py-snap/mnt "
                        "(and 1 more)", "umount /run/bootc-py-snap/mnt"),
    "loop-4g-swap": ("/dev/loop0: /dev/loop0p3 is in use as active swap",
                     "swapoff /dev/loop0p3"),
    "loop-4g-lvm-active": ("/dev/loop0: /dev/loop0p1 is an LVM physical volume of the active "
                           "volume group vg-snap", "vgchange -an vg-snap"),
    "loop-4g-raid-member": ("/dev/loop0: /dev/loop0p1 is a member of the RAID array md127",
                            "mdadm --stop /dev/md127"),
    "loop-4g-partition": ("/dev/loop0p2 is a partition, not a whole disk", "(/dev/loop0)"),
}


@pytest.mark.parametrize("name", sorted(BUSY))
@pytest.mark.parametrize("wipe", [False, True])
def test_busy_disks_are_refused_even_with_wipe(name: str, wipe: bool) -> None:
    message, hint = BUSY[name]
    err = refusal(name, wipe=wipe)
    assert err.message == message
    assert err.hint is not None and hint in err.hint


@pytest.mark.parametrize(("name", "contents"), [
    ("loop-4g-installed", "a gpt partition table with 4 partitions (vfat, ext4, xfs)"),
    ("loop-4g-whole-xfs", "a signature (xfs)"),
    ("loop-4g-lvm-pv", "a gpt partition table with 1 partition (LVM2_member)"),
])
def test_used_disks_need_wipe(name: str, contents: str) -> None:
    err = refusal(name, wipe=False)
    assert err.message == f"/dev/loop0 is not empty: it has {contents}; use --wipe to erase it"
    assert err.hint == "--wipe destroys everything on /dev/loop0"


def test_too_small() -> None:
    err = refusal("loop-1g-small", wipe=True)
    assert err.message == ("/dev/loop0 is too small: 1 GiB (1073741824 bytes), need at least "
                           "3 GiB (3221225472 bytes)")


def test_size_exactly_enough() -> None:
    disk = snapshot("loop-1g-small")
    check_target(disk, wipe=False, min_size=disk.size_bytes)


def test_root_wins_over_mounted() -> None:
    # The running root is also mounted at /: the more serious reason is given.
    disk = snapshot("vda-running-root")
    assert disk.mounted_paths == ("/",)
    assert disk.holds_root
    with pytest.raises(DiskError) as err:
        check_target(disk, wipe=True, min_size=MIN)
    assert err.value.message == "/dev/vda holds the running system's root filesystem"


def test_read_only_and_no_medium() -> None:
    base = snapshot("loop-4g-empty").to_dict()
    ro = DiskInfo.from_dict({**base, "read_only": True})
    with pytest.raises(DiskError, match=r"^/dev/loop0 is read-only$"):
        check_target(ro, wipe=True, min_size=MIN)
    empty = DiskInfo.from_dict({**base, "size_bytes": 0})
    with pytest.raises(DiskError, match=r"has no medium \(size 0\)"):
        check_target(empty, wipe=True, min_size=MIN)


@pytest.mark.parametrize("name", SNAPSHOTS)
def test_snapshots_round_trip(name: str) -> None:
    raw = json.loads((DATA / f"{name}.json").read_text())
    disk = DiskInfo.from_dict(raw)
    again = json.loads(disk.to_json())
    assert again == {k: v for k, v in raw.items() if not k.startswith("_")}
    assert DiskInfo.from_json(disk.to_json()) == disk


def test_snapshot_fields() -> None:
    disk = snapshot("loop-4g-installed")
    assert disk.is_loop and disk.backing_file and not disk.is_empty
    assert [p.path.name for p in disk.partitions] == ["loop0p1", "loop0p2", "loop0p3", "loop0p4"]
    assert [p.label for p in disk.partitions] == [None, "EFI-SYSTEM", "boot", "root"]
    assert disk.partitions[3].parttype == "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"
    assert disk.partitions[3].start == 1538 * (1 << 20)
    swap = snapshot("loop-4g-swap")
    assert [u.kind for u in swap.in_use] == [UseKind.SWAP]
    assert snapshot("loop-8g-4kn-empty").logical_sector_size == 4096
    assert snapshot("loop-4g-empty").is_empty


@pytest.mark.parametrize(("dm", "vg"), [
    ("vg0-root", "vg0"), ("vg--snap-root", "vg-snap"), ("a--b--c-d--e", "a-b-c"),
    ("plain", "plain"),
])
def test_lvm_vg_name(dm: str, vg: str) -> None:
    assert lvm_vg_name(dm) == vg


def test_describe_contents_without_filesystems() -> None:
    base = snapshot("loop-4g-installed").to_dict()
    for p in base["partitions"]:
        p["fstype"] = None
    assert describe_contents(DiskInfo.from_dict(base)) == "a gpt partition table with 4 partitions"
