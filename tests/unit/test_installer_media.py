"""The installer media's pure parts: the ISO's GRUB menu, the PXE bundle's scripts, the live
installer's choice of kickstart and disk, and the build's refusals that need no image
(tests/vm/test_installer_iso.py and test_installer_pxe.py boot the real thing)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from bootc_py.artifacts import scratch
from bootc_py.artifacts.iso import render_early_cfg, render_grub_cfg
from bootc_py.artifacts.live import MediaOptions
from bootc_py.cli import main
from bootc_py.errors import UsageError
from bootc_py.installer.disk_prompt import Candidate, ask, console
from bootc_py.installer.live import (
    DEFAULT_KICKSTART,
    KickstartSource,
    Medium,
    empty_disks,
    kickstart_source,
    unattended,
)
from bootc_py.kickstart.parse import parse
from bootc_py.kickstart.translate import TranslateOptions, translate

MEDIUM = Medium(Path("/run/initramfs/live"), {}, "/dev/sr0")


def test_menu_installs_by_default_and_has_a_rescue_entry() -> None:
    cfg = render_grub_cfg("BOOTC-PY-INSTALL", timeout=5, title="Sample OS",
                          live_kargs=("rd.debug",))
    entries = cfg.split("menuentry ")[1:]
    assert entries[0].startswith("'Install Sample OS'")
    assert entries[1].startswith("'Rescue: start Sample OS without installing'")
    linux = [next(x for x in e.splitlines() if x.strip().startswith("linux ")) for e in entries]
    for line in linux:
        assert "root=live:CDLABEL=BOOTC-PY-INSTALL rd.live.image rd.live.overlay.overlayfs=1" \
            in line and line.endswith(" rd.debug")
    assert "bootc-py.live-install" in linux[0] and "bootc-py.live-install" not in linux[1]
    assert "set timeout=5\nset default=0\n" in cfg
    assert "terminal_output console serial" in cfg  # the menu on a serial console too


def test_grub_finds_the_medium_by_its_install_record() -> None:
    assert render_early_cfg().splitlines()[0] == \
        "search --no-floppy --file --set=root /bootc-py/install.json"


def test_volume_id_must_be_iso9660() -> None:
    with pytest.raises(UsageError, match="not an ISO 9660 volume id"):
        MediaOptions(volume_id="my install")
    with pytest.raises(UsageError):
        MediaOptions(volume_id="X" * 33)


@pytest.mark.parametrize(("arg", "expected"), [
    ("inst.ks=http://10.0.2.2/ks.cfg", KickstartSource("http://10.0.2.2/ks.cfg")),
    ("inst.ks=tftp://10.0.2.2/ks.cfg", KickstartSource("tftp://10.0.2.2/ks.cfg")),
    ("inst.ks=file:/tmp/ks.cfg", KickstartSource("/tmp/ks.cfg")),
    ("inst.ks=cdrom:/ks/a.cfg", KickstartSource("/run/initramfs/live/ks/a.cfg")),
    ("inst.ks=hd:LABEL=KS:/a.cfg", KickstartSource("/a.cfg", device="LABEL=KS")),
    ("inst.ks=hd:sdb1:/a.cfg", KickstartSource("/a.cfg", device="/dev/sdb1")),
    ("ks=hd:/dev/vdb:/x/ks.cfg", KickstartSource("/x/ks.cfg", device="/dev/vdb")),
])
def test_inst_ks_forms(arg: str, expected: KickstartSource) -> None:
    assert kickstart_source(f"BOOT_IMAGE=/boot/vmlinuz quiet {arg} rd.live.image",
                            MEDIUM) == expected


def test_no_inst_ks_and_bad_forms() -> None:
    assert kickstart_source("quiet rd.live.image", MEDIUM) is None
    with pytest.raises(UsageError, match="unsupported location"):
        kickstart_source("inst.ks=nfs:server:/ks.cfg", MEDIUM)
    with pytest.raises(UsageError, match="expected hd:DEVICE:/path"):
        kickstart_source("inst.ks=hd:sdb1", MEDIUM)


def test_only_empty_writable_disks_other_than_the_medium_are_candidates() -> None:
    lsblk = {"blockdevices": [
        {"name": "/dev/sr0", "type": "rom", "ro": False},
        {"name": "/dev/vda", "type": "disk", "ro": False},
        {"name": "/dev/vdb", "type": "disk", "ro": False, "pttype": "gpt",
         "children": [{"name": "/dev/vdb1", "type": "part"}]},
        {"name": "/dev/vdc", "type": "disk", "ro": False, "fstype": "xfs"},
        {"name": "/dev/vdd", "type": "disk", "ro": True},
        {"name": "/dev/sda", "type": "disk", "ro": False},  # the USB stick booted from
        {"name": "/dev/vde", "type": "disk", "ro": "0"},
    ]}
    assert empty_disks(lsblk, {"/dev/sda"}) == ["/dev/vda", "/dev/vde"]


def test_the_default_kickstart_is_bootc_image_builders() -> None:
    doc = parse(DEFAULT_KICKSTART, source="default.ks")
    plan = translate(doc, TranslateOptions(source_imgref="oci:/run/initramfs/live/p:install",
                                           target_imgref="docker://example.org/os:1"))
    assert plan.target.disk is None and plan.target.wipe  # the caller picks the only disk
    assert plan.finish == "reboot" and plan.eject
    assert plan.options.source_imgref == "oci:/run/initramfs/live/p:install"
    assert plan.options.target_imgref == "docker://example.org/os:1"
    assert "lvm" in plan.to_json()


@pytest.mark.parametrize(("args", "message"), [
    (["--type", "iso,qcow2"], "an installer medium (iso, pxe-tar-xz) and disk images"),
    (["--type", "iso,pxe-tar-xz"], "build one installer medium per run"),
    (["--type", "iso", "--rootfs", "ext4"], "--rootfs, --disk-size, --root-ssh-authorized-keys"),
    (["--type", "qcow2", "--no-payload"], "--no-payload is for --type iso"),
])
def test_build_refusals_before_any_pull(args: list[str], message: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["build", *args, "oci:/nonexistent:v1"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") and "Traceback" not in err


def test_ipxe_script_names_files_relative_to_itself() -> None:
    from bootc_py.artifacts.pxe import render_ipxe

    lines = render_ipxe(("rd.debug",)).splitlines()
    assert lines[0] == "#!ipxe"
    kernel = next(x for x in lines if x.startswith("kernel "))
    assert kernel.startswith("kernel vmlinuz ")
    assert "root=live:/rootfs.img rd.live.image rd.live.overlay.overlayfs=1" in kernel
    assert kernel.endswith(" bootc-py.live-install rd.debug")
    # the live root rides as a second initrd, wrapped into a cpio archive by iPXE
    assert "initrd initrd.img" in lines and "initrd rootfs.img /rootfs.img" in lines
    assert lines[-1] == "boot"
    assert not any("://" in x for x in lines)  # nothing names a server


def test_pxe_grub_cfg_wraps_the_live_root_with_newc() -> None:
    from bootc_py.artifacts.pxe import render_grub_cfg as pxe_grub

    cfg = pxe_grub("Sample OS", timeout=5)
    assert cfg.count("initrd initrd.img newc:/rootfs.img:rootfs.img") == 2
    install, rescue = cfg.split("menuentry ")[1:]
    assert "bootc-py.live-install" in install and "bootc-py.live-install" not in rescue


def test_a_pxe_live_root_carries_its_own_medium(tmp_path: Path) -> None:
    from bootc_py.installer.live import read_medium

    inside = tmp_path / "usr/lib/bootc-py/medium"
    (inside / "bootc-py").mkdir(parents=True)
    (inside / "bootc-py/install.json").write_text('{"payload": "bootc-py/payload:install"}')
    medium = read_medium(tmp_path / "run/initramfs/live", inside)
    assert medium.root == inside and medium.device is None
    assert medium.record["payload"] == "bootc-py/payload:install"
    with pytest.raises(UsageError, match="no installer medium at"):
        read_medium(tmp_path / "run/initramfs/live", tmp_path / "nothing")


def test_the_only_empty_disk_not_ignored_by_the_kickstart_is_chosen(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from bootc_py.installer import live

    disks = {"blockdevices": [{"name": "/dev/vda", "type": "disk", "ro": False},
                              {"name": "/dev/vdb", "type": "disk", "ro": False}]}
    monkeypatch.setattr(live, "_list_disks", lambda: disks)
    pxe = Medium(Path("/usr/lib/bootc-py/medium"), {}, None)
    with pytest.raises(UsageError, match=r"several empty disks \(/dev/vda, /dev/vdb\)") as exc:
        live.choose_disk(None, pxe)
    assert "an attended run" in str(exc.value.hint)  # the way to be asked instead
    assert live.choose_disk(None, pxe, skip=("/dev/vda",)) == "/dev/vdb"
    assert live.choose_disk("/dev/vda", pxe) == "/dev/vda"



DISKS = [Candidate("/dev/vda", "12G  QEMU disk  spare"), Candidate("/dev/vdb", "12G  target")]


def scripted(*lines: str) -> tuple[Callable[[], str], list[str]]:
    """A console that answers `lines` in turn, then reports the end of input."""
    answers = iter(lines)
    shown: list[str] = []
    return (lambda: next(answers, "")), shown


def test_the_prompt_asks_again_until_a_disk_is_chosen_and_confirmed() -> None:
    read, shown = scripted("7\n", "vdb\n", "no\n", "2\n", "yes\n")
    assert ask(DISKS, read, shown.append) == "/dev/vdb"
    text = "".join(shown)
    assert "  1) /dev/vda  12G  QEMU disk  spare\n  2) /dev/vdb  12G  target\n" in text
    assert "'7' is not one of the disks above" in text
    # 'no' at the confirmation went back to the choice: the menu was shown three times
    assert text.count("Disk [1-2], or q to stop without installing: ") == 3
    assert text.count("Erase everything on /dev/vdb (12G  target) and install?") == 2
    assert text.endswith("Installing onto /dev/vdb.\n")


@pytest.mark.parametrize(("lines", "message"), [
    ((), "no disk was chosen at the console (end of input): nothing was written"),
    (("q\n",), "stopped at the console: no disk was chosen, nothing was written"),
    (("1\n",), "no disk was chosen at the console (end of input): nothing was written"),
])
def test_the_prompt_stops_without_a_disk(lines: tuple[str, ...], message: str) -> None:
    read, shown = scripted(*lines)
    with pytest.raises(UsageError) as err:
        ask(DISKS, read, shown.append)
    assert err.value.message == message


def test_the_console_drops_typed_ahead_input_and_reads_the_answer() -> None:
    """A real terminal (a pty): what was typed before the question is not its answer."""
    master, slave = os.openpty()
    try:
        os.write(master, b"1\n")  # a stray keystroke from before the question
        with console(Path(os.ttyname(slave))) as (read, write):
            write("Disk [1-2]: ")
            seen = b""
            while not seen.endswith(b"Disk [1-2]: "):  # after the echo of the stray "1"
                seen += os.read(master, 100)
            os.write(master, b"2\n")
            assert read() == "2\n"
    finally:
        os.close(master)
        os.close(slave)
    with pytest.raises(UsageError, match="cannot ask which disk: /nonexistent/console"), \
            console(Path("/nonexistent/console")):
        pass


def test_several_empty_disks_are_asked_about_only_when_attended(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from bootc_py.installer import live

    disks = {"blockdevices": [
        {"name": "/dev/vda", "type": "disk", "ro": False, "size": "12G", "serial": "spare"},
        {"name": "/dev/vdb", "type": "disk", "ro": False, "size": "12G", "model": "QEMU HD",
         "serial": "target"}]}
    monkeypatch.setattr(live, "_list_disks", lambda: disks)
    asked: list[Sequence[Candidate]] = []

    def pick_last(candidates: Sequence[Candidate]) -> str:
        asked.append(candidates)
        return candidates[-1].device

    pxe = Medium(Path("/usr/lib/bootc-py/medium"), {}, None)
    assert live.choose_disk(None, pxe, ask=pick_last) == "/dev/vdb"
    assert asked == [[Candidate("/dev/vda", "12G  spare"),
                      Candidate("/dev/vdb", "12G  QEMU HD  target")]]
    # one candidate, or a disk the kickstart names: nothing to ask
    assert live.choose_disk(None, pxe, skip=("/dev/vda",), ask=pick_last) == "/dev/vdb"
    assert live.choose_disk("/dev/vda", pxe, ask=pick_last) == "/dev/vda"
    assert len(asked) == 1


@pytest.mark.parametrize(("record", "kickstart", "expected"), [
    ({}, DEFAULT_KICKSTART, False),             # bootc-py's default asks when it must
    ({"unattended": True}, DEFAULT_KICKSTART, True),   # config.toml's installer.unattended
    ({}, "cmdline\n", True),
    ({}, "text --non-interactive\n", True),
    ({}, "graphical\n", False),
    ({"unattended": False}, "", False),
])
def test_unattended_runs_never_ask(record: dict[str, object], kickstart: str,
                                   expected: bool) -> None:
    doc = parse(kickstart, source="ks.cfg")
    assert unattended(record, doc.setting("display")) is expected


def test_eject_opens_only_a_cd_drive(tmp_path: Path) -> None:
    """`--eject` acts on the medium's drive when it is a CD (SCSI type 5 in sysfs); a USB
    stick (a disk) and a PXE boot (no medium) have nothing to eject."""
    from bootc_py.installer import eject
    from bootc_py.installer.live import eject_device

    for name, scsi_type in (("sr0", "5"), ("sda", "0")):
        (tmp_path / name / "device").mkdir(parents=True)
        (tmp_path / name / "device/type").write_text(scsi_type + "\n")
    assert eject.is_cdrom("/dev/sr0", tmp_path) and not eject.is_cdrom("/dev/sda", tmp_path)
    assert not eject.is_cdrom("/dev/vdz", tmp_path)  # no sysfs entry: no tray
    cdrom = lambda dev: eject.is_cdrom(dev, tmp_path)  # noqa: E731
    assert eject_device(MEDIUM, cdrom) == "/dev/sr0"
    assert eject_device(Medium(MEDIUM.root, {}, "/dev/sda"), cdrom) is None
    assert eject_device(Medium(MEDIUM.root, {}, None), cdrom) is None


def test_eject_is_armed_as_a_systemd_shutdown_hook(tmp_path: Path) -> None:
    """The CD is ejected by systemd-shutdown at the very end (the live root reads from it
    until then): the hook runs this module on the drive; the SCSI commands unlock the tray,
    then stop the unit with LoEj; the SG_IO header is the kernel's (88 bytes on x86-64)."""
    import ctypes

    from bootc_py.installer import eject

    hook = tmp_path / "system-shutdown/bootc-py-eject"
    eject.arm("/dev/sr0", hook)
    assert os.access(hook, os.X_OK)
    text = hook.read_text()
    assert text.startswith("#!/bin/sh\n")
    assert text.rstrip().endswith("exec /usr/bin/python3 -m bootc_py.installer.eject /dev/sr0")
    assert ctypes.sizeof(eject.SgIoHdr) == 88
    assert eject.ALLOW_MEDIUM_REMOVAL[0] == 0x1E and eject.ALLOW_MEDIUM_REMOVAL[4] == 0
    assert eject.START_STOP_EJECT[0] == 0x1B and eject.START_STOP_EJECT[4] == 0x02
    # On a device that is no drive: one line on the console, status 1, no traceback.
    console = tmp_path / "console"
    assert eject.main([str(tmp_path / "missing")], console) == 1
    assert console.read_text().startswith(f"bootc-py: could not eject {tmp_path}/missing: ")
    assert console.read_text().count("\n") == 1
    assert eject.main([], console) == 2


def test_the_unpacked_tree_goes_to_ram_only_with_a_margin_left() -> None:
    meminfo = "MemTotal:       24000000 kB\nMemFree:  100 kB\nMemAvailable:    2097152 kB\n"
    available = scratch.mem_available(meminfo)
    assert available == 2 << 30
    assert scratch.fits_in_ram(1 << 30, available)  # 1 GiB left over: the margin
    assert not scratch.fits_in_ram((1 << 30) + 1, available)
    assert scratch.mem_available("MemTotal: 1 kB\n") is None  # an old kernel: never RAM
    assert not scratch.fits_in_ram(1, None)
