"""Kickstart -> install plan: golden plans for every fixture kickstart, every error case.

tests/unit/data/kickstart/NAME.ks -> golden/NAME.json (the plan), golden/NAME.txt (what
--dry-run prints, with the layout planned on a 20 GiB disk), or golden/NAME.errors for the
err-* kickstarts (what `kickstart validate` prints). Regenerate after an intended change with
BOOTC_PY_UPDATE_GOLDEN=1.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bootc_py.disk.layout import plan_layout
from bootc_py.disk.model import GiB
from bootc_py.kickstart.parse import parse
from bootc_py.kickstart.translate import (
    KickstartError,
    TranslateOptions,
    disk_of_partition,
    partition_number,
    translate,
)
from testlib import check_golden as golden

DATA = Path(__file__).parent / "data" / "kickstart"
GOLDEN = DATA / "golden"
GOOD = sorted(p.stem for p in DATA.glob("*.ks") if not p.stem.startswith("err-"))
BAD = sorted(p.stem for p in DATA.glob("err-*.ks"))
DISK = 20 * GiB


def check_golden(name: str, text: str) -> None:
    golden(GOLDEN / name, text)


def doc(name: str, text: str | None = None):  # type: ignore[no-untyped-def]
    return parse(text if text is not None else (DATA / f"{name}.ks").read_text(),
                 source=f"{name}.ks", base_dir=DATA)


@pytest.mark.parametrize("name", GOOD)
def test_golden_plan(name: str) -> None:
    plan = translate(doc(name))
    check_golden(f"{name}.json", plan.to_json())
    check_golden(f"{name}.txt", plan.render(plan_layout(plan.layout, DISK)))


@pytest.mark.parametrize("name", BAD)
def test_golden_errors(name: str) -> None:
    with pytest.raises(KickstartError) as info:
        translate(doc(name))
    check_golden(f"{name}.errors", "".join(f"{p}\n" for p in info.value.problems))


def test_include_is_relative_to_the_kickstart_and_errors_name_the_included_file(
        tmp_path: Path) -> None:
    (tmp_path / "disk.ks").write_text("reqpart --add-boot\npart / --grow\n%packages\n%end\n")
    text = "bootc --source-imgref registry:localhost:5000/os:1\n%include disk.ks\n"
    with pytest.raises(KickstartError) as info:
        translate(parse(text, source="main.ks", base_dir=tmp_path))
    assert [str(p) for p in info.value.problems] == [
        "disk.ks:3: %packages is not supported with a bootable container image: "
        "install packages in the Containerfile"]


def test_warn_unsupported_skips_with_a_warning_each() -> None:
    text = ("bootc --source-imgref registry:localhost:5000/os:1\nreqpart --add-boot\n"
            "part / --grow\niscsiname iqn.2026-01.example:h\nrealm join example.com\n")
    with pytest.raises(KickstartError, match=r"ks\.cfg:4: iscsiname is not supported"):
        translate(parse(text, source="ks.cfg"))
    plan = translate(parse(text, source="ks.cfg"), TranslateOptions(warn_unsupported=True))
    assert plan.warnings == ("ks.cfg:4: iscsiname is not supported by bootc-py: skipped",
                             "ks.cfg:5: realm is not supported by bootc-py: skipped")
    assert plan.options.source_imgref == "registry:localhost:5000/os:1"


def test_ks_version_chooses_the_handler() -> None:
    text = "bootc --source-imgref registry:localhost:5000/os:1 --composefs\n"
    # --composefs exists from F45 on: under F43 it is pykickstart's parse error.
    with pytest.raises(KickstartError, match="unrecognized arguments: --composefs"):
        translate(parse(text, source="ks.cfg", version="F43"))
    with pytest.raises(KickstartError, match="--composefs is not supported by bootc-py"):
        translate(parse(text, source="ks.cfg"))


def test_unknown_ks_version_is_a_usage_error() -> None:
    from bootc_py.errors import UsageError
    with pytest.raises(UsageError, match="unknown kickstart version 'F99'"):
        parse("", source="ks.cfg", version="F99")


def test_two_payloads_are_refused() -> None:
    text = ("bootc --source-imgref registry:localhost:5000/os:1\n"
            "ostreecontainer --url localhost:5000/os:1\n")
    with pytest.raises(KickstartError, match=r"ks\.cfg:2: .*can't be used at the same time"):
        translate(parse(text, source="ks.cfg"))


def test_bootloader_timeout_zero_counts_and_out_of_range_is_refused() -> None:
    base = "bootc --source-imgref registry:localhost:5000/os:1\nreqpart --add-boot\n" \
           "part / --grow\n"
    plan = translate(parse(base + "bootloader --timeout 0\n", source="ks.cfg"))
    assert plan.system.bootloader_timeout == 0 and plan.warnings == ()
    with pytest.raises(KickstartError) as info:
        translate(parse(base + "bootloader --timeout 301\n", source="ks.cfg"))
    assert [str(p) for p in info.value.problems] == [
        "ks.cfg:4: bootloader --timeout 301: give 0 to 300 seconds"]


@pytest.mark.parametrize(("name", "disk", "number"), [
    ("vda1", "/dev/vda", 1), ("sda12", "/dev/sda", 12), ("nvme0n1p2", "/dev/nvme0n1", 2),
    ("mmcblk0p1", "/dev/mmcblk0", 1),
    ("disk/by-id/virtio-os-part3", "/dev/disk/by-id/virtio-os", 3),
    ("nvme0n1", "/dev/nvme0n1", 0), ("vda", "/dev/vda", 0),
])
def test_clearpart_list_names_partitions_on_their_disk(name: str, disk: str,
                                                        number: int) -> None:
    assert (disk_of_partition(name), partition_number(name)) == (disk, number)


def test_clearpart_list_of_a_disk_name_is_an_error() -> None:
    text = "bootc --source-imgref registry:localhost:5000/os:1\nclearpart --list=nvme0n1\n" \
        "reqpart --add-boot\npart / --grow\n"
    with pytest.raises(KickstartError) as info:
        translate(parse(text, source="ks.cfg"))
    assert [str(p) for p in info.value.problems] == [
        "ks.cfg:2: clearpart --list /dev/nvme0n1: not a partition name (vda1, nvme0n1p2, ...)"]
