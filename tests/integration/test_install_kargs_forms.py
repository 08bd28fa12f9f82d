"""Every form in which a kernel argument reaches the linux line is checked for a second root=
and an `ro` against the generated `root=UUID=... rw`: several words in one `--karg`, the
image's install config, its kargs.d. Refused before anything is written, in one line."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from synthetic import SyntheticImages, base_tree, build_image, run_cli

from bootc_py.disk.loop import LoopDevice


@pytest.fixture()
def loop_disk(tmp_path: Path) -> Iterator[Path]:
    disk = tmp_path / "blank.raw"
    with open(disk, "wb") as f:
        f.truncate(5 << 30)
    with LoopDevice(disk) as loop:
        yield loop.path


def error_line(stderr: str) -> str:
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr
    return errors[0]


def assert_blank(device: Path) -> None:
    probe = subprocess.run(["blkid", "-p", str(device)], capture_output=True, text=True)
    assert probe.returncode == 2, probe.stdout  # nothing was written


RO = "the installer mounts the root read-write ('rw'; /usr stays read-only)"
ROOT = "the installer sets root=UUID=<root> itself; a second root= is not allowed"


@pytest.mark.parametrize(("karg", "reason"), [
    ("quiet ro", f"'ro' in it: {RO}"),
    ("console=ttyS0 root=/dev/sda2", f"'root=/dev/sda2' in it: {ROOT}"),
])
def test_ro_or_root_inside_one_karg_is_refused(synthetic: SyntheticImages, loop_disk: Path,
                                                tmp_path: Path, karg: str, reason: str) -> None:
    res = run_cli("install", "to-disk", "--wipe", "--karg", karg, "--source-imgref",
                  synthetic.ref("v1"), "--cache-dir", str(tmp_path / "cache"), str(loop_disk))
    assert res.returncode == 2
    assert error_line(res.stderr) == f"error: kernel argument {karg!r} from --karg: {reason}"
    assert_blank(loop_disk)


@pytest.mark.parametrize(("where", "toml", "karg", "reason"), [
    ("usr/lib/bootc/install/00-syn.toml", '[install]\nkargs = ["ro"]\n', "ro", RO),
    ("usr/lib/bootc/install/00-syn.toml", '[install]\nkargs = ["root=/dev/vda4"]\n',
     "root=/dev/vda4", ROOT),
    ("usr/lib/bootc/kargs.d/10-syn.toml", 'kargs = ["quiet ro"]\n', "quiet ro",
     f"'ro' in it: {RO}"),
    ("usr/lib/bootc/kargs.d/10-syn.toml", 'kargs = ["root=LABEL=os"]\n', "root=LABEL=os",
     ROOT),
])
def test_ro_or_root_from_the_image_is_refused(tmp_path: Path, loop_disk: Path, where: str,
                                              toml: str, karg: str, reason: str) -> None:
    def tree(root: Path) -> None:
        base_tree(root)
        (root / where).write_text(toml)

    ref = build_image(tmp_path / "oci", "bad", [tree], work=tmp_path / "build")
    res = run_cli("install", "to-disk", "--wipe", "--source-imgref", ref,
                  "--cache-dir", str(tmp_path / "cache"), str(loop_disk))
    assert res.returncode == 2
    glob = "install/*.toml" if "/install/" in where else "kargs.d/*.toml"
    assert error_line(res.stderr) == (
        f"error: kernel argument {karg!r} from {ref}'s /usr/lib/bootc/{glob}: {reason}")
    assert_blank(loop_disk)
