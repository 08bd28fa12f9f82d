"""The installer media's pure parts: the ISO's GRUB menu, the PXE bundle's scripts, the live
installer's choice of kickstart and disk, and the build's refusals that need no image
(tests/vm/test_installer_iso.py and test_installer_pxe.py boot the real thing)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bootc_py.artifacts.iso import render_early_cfg, render_grub_cfg
from bootc_py.artifacts.live import MediaOptions
from bootc_py.cli import main
from bootc_py.errors import UsageError
from bootc_py.installer.live import (
    DEFAULT_KICKSTART,
    KickstartSource,
    Medium,
    empty_disks,
    kickstart_source,
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
    with pytest.raises(UsageError, match=r"several empty disks \(/dev/vda, /dev/vdb\)"):
        live.choose_disk(None, pxe)
    assert live.choose_disk(None, pxe, skip=("/dev/vda",)) == "/dev/vdb"
    assert live.choose_disk("/dev/vda", pxe) == "/dev/vda"

