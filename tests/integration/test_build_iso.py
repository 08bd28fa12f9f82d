"""`build --type iso` on the host: what refuses before anything is written, and that a
refusal leaves nothing behind (the VM test boots a real ISO: tests/vm/test_installer_iso.py).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from synthetic import SyntheticImages, run_cli

from bootc_py.artifacts import scratch
from bootc_py.artifacts.oci_payload import write_payload
from bootc_py.image.ref import parse_imgref
from bootc_py.image.source import PullOptions, pull
from testlib import require_tool


def test_an_image_without_dracut_live_is_refused_and_nothing_is_left(
        synthetic: SyntheticImages, tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = run_cli("build", "--type", "iso", "--output", str(out), "--cache-dir",
                  str(synthetic.cache), synthetic.ref("v1"))
    assert res.returncode == 1, res.stderr
    errors = [x for x in res.stderr.splitlines() if x.startswith(("error: ", "hint: "))]
    assert errors == [
        f"error: {synthetic.ref('v1')} has no dracut-live "
        "(/usr/lib/dracut/modules.d/90dmsquash-live): its initramfs cannot boot a live medium",
        "hint: add the dracut-live package to the image"]
    assert "Traceback" not in res.stderr
    left = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    assert left in ([], ["bootiso"]), left  # no partial ISO, no temp tree


def test_the_payload_is_an_oci_layout_skopeo_reads_with_the_pulled_digest(
        synthetic: SyntheticImages, tmp_path: Path) -> None:
    require_tool("skopeo")
    image = pull(parse_imgref(synthetic.ref("v2")), PullOptions(cache_dir=synthetic.cache))
    dest = tmp_path / "payload"
    digest = write_payload(image, dest, "install")
    assert digest == image.manifest_digest
    inspect = run_skopeo("inspect", f"oci:{dest}:install")
    assert inspect["Digest"] == image.manifest_digest
    assert inspect["Labels"]["org.opencontainers.image.version"] == "2.0"
    # and bootc-py installs from it as from any oci: layout
    again = pull(parse_imgref(f"oci:{dest}:install"),
                 PullOptions(cache_dir=tmp_path / "cache"))
    assert again.manifest_digest == image.manifest_digest


def run_skopeo(*args: str) -> dict[str, object]:
    res = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=120,
                         check=True)
    data: dict[str, object] = json.loads(res.stdout)
    return data


@pytest.mark.parametrize("title", ["Debian 12 (bootc)", "it's \"x\" $root; {a} | b"])
def test_the_media_grub_cfgs_parse(tmp_path: Path, title: str) -> None:
    """Both media menus go through grub-script-check as the build writes them: an image title
    (a label, anyone's text) cannot break them."""
    from bootc_py.artifacts import pxe
    from bootc_py.artifacts.iso import render_grub_cfg
    from bootc_py.bootloader.grub import check_syntax

    for name, text in (("iso.cfg", render_grub_cfg("BOOTC-PY-INSTALL", timeout=5, title=title,
                                                   live_kargs=("quiet",))),
                       ("pxe.cfg", pxe.render_grub_cfg(title, timeout=0, live_kargs=()))):
        (tmp_path / name).write_text(text)
        check_syntax(tmp_path / name, required=True)
        assert (tmp_path / name).exists(), text


def test_scratch_space_is_a_tmpfs_capped_at_the_need_only_when_it_fits(tmp_path: Path) -> None:
    def fstype(path: Path) -> str:
        return subprocess.run(["findmnt", "-n", "-o", "FSTYPE", "-T", str(path)],
                              capture_output=True, text=True, check=True).stdout.split()[0]

    disk = fstype(tmp_path)
    for work in ("a", "b"):
        (tmp_path / work).mkdir()
    with scratch.scratch_space(tmp_path / "a", 64 << 20, available=8 << 30) as space:
        assert fstype(space) == "tmpfs"
        assert os.statvfs(space).f_blocks * os.statvfs(space).f_frsize == 64 << 20
        (space / "f").write_bytes(b"x")
    assert not (tmp_path / "a/scratch/f").exists()  # unmounted: gone with the tmpfs
    with scratch.scratch_space(tmp_path / "b", 64 << 20, available=(1 << 30) + 1) as space:
        assert fstype(space) == disk  # no 1 GiB margin left: next to the output
        (space / "f").write_bytes(b"x")
    assert (tmp_path / "b/scratch/f").exists()  # the caller's work dir, removed with it
