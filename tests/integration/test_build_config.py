"""`build --config config.toml` (bootc-image-builder's build configuration) on real loop
devices: users, keys, kernel arguments and an extra filesystem land in the disk image; an
image's own /usr/lib/bootc-image-builder/config.toml is the default; a bad file builds
nothing. (The ISO with a config.toml is booted in tests/vm/test_installer_iso.py.)"""

from __future__ import annotations

import json
import subprocess
from contextlib import ExitStack
from pathlib import Path

import pytest
from synthetic import SyntheticImages, base_tree, build_image, run_cli
from test_kickstart_install import shell_tree

from bootc_py.disk.loop import LoopDevice
from bootc_py.disk.mount import Mount

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIConfigTomlTestKeyOnly0000000000 alice@example.com"
CONFIG = f"""\
[[customizations.user]]
name = "alice"
password = "secret"
key = "{KEY}"
groups = ["wheel"]

[customizations.kernel]
append = "cfg.karg=1 console=ttyS0,115200n8"

[[customizations.filesystem]]
mountpoint = "/var/data"
minsize = "300 MiB"
"""


def _embedded_config(root: Path) -> None:
    d = root / "usr/lib/bootc-image-builder"
    d.mkdir(parents=True)
    (d / "config.toml").write_text('[[customizations.user]]\nname = "carried"\n'
                                   '[customizations.kernel]\nappend = "from.image=1"\n')


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    work = tmp_path_factory.mktemp("config-images")
    plain = build_image(work / "oci", "plain", [base_tree, shell_tree], work=work / "build")
    carrying = build_image(work / "oci", "carrying", [base_tree, shell_tree, _embedded_config],
                           work=work / "build")
    return plain, carrying


def _deployment(mnt: Path) -> Path:
    found = list((mnt / "ostree/deploy/default/deploy").glob("*.0"))
    assert len(found) == 1
    return found[0]


def test_users_kargs_and_a_filesystem_from_config_toml(
        images: tuple[str, str], synthetic: SyntheticImages, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(CONFIG)
    out = tmp_path / "out"
    res = run_cli("build", "--type", "raw", "--output", str(out), "--disk-size", "4G",
                  "--rootfs", "ext4", "--config", str(config), "--cache-dir",
                  str(synthetic.cache), images[0])
    assert res.returncode == 0, res.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["rootfs"] == "ext4"
    with ExitStack() as stack:
        loop = stack.enter_context(LoopDevice(out / "image/disk.raw"))
        # /var/data: a partition of its own (the fourth), ext4, at least 300 MiB.
        data = loop.partition(4)
        assert int(subprocess.run(["blockdev", "--getsize64", data], capture_output=True,
                                  text=True, check=True).stdout) >= 300 << 20
        assert subprocess.run(["blkid", "-o", "value", "-s", "TYPE", data], capture_output=True,
                              text=True, check=True).stdout.strip() == "ext4"
        mnt = tmp_path / "mnt"
        # The grown root comes last (after /var/data), as bootc-image-builder orders it.
        stack.enter_context(Mount(loop.partition(5), mnt))
        etc = _deployment(mnt) / "etc"
        assert "alice:x:1000:1000::/var/home/alice:/bin/bash" in (etc / "passwd").read_text()
        assert any(line.startswith("wheel:") and line.endswith(":alice")
                   for line in (etc / "group").read_text().splitlines())
        shadow = next(x for x in (etc / "shadow").read_text().splitlines()
                      if x.startswith("alice:"))
        assert shadow.split(":")[1].startswith("$6$")  # hashed, never the plain text
        keys = mnt / "ostree/deploy/default/var/home/alice/.ssh/authorized_keys"
        assert keys.read_text() == KEY + "\n"
        fstab = (etc / "fstab").read_text()
        assert " /var/data ext4 " in fstab, fstab
        stack.enter_context(Mount(loop.partition(3), mnt / "boot"))
        entry = next((mnt / "boot/loader/entries").glob("*.conf")).read_text()
        assert "cfg.karg=1 console=ttyS0,115200n8" in entry


def test_the_image_s_own_config_toml_is_the_default(
        images: tuple[str, str], synthetic: SyntheticImages, tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = run_cli("build", "--type", "raw", "--output", str(out), "--disk-size", "4G",
                  "--cache-dir", str(synthetic.cache), images[1])
    assert res.returncode == 0, res.stderr
    with ExitStack() as stack:
        loop = stack.enter_context(LoopDevice(out / "image/disk.raw"))
        mnt = tmp_path / "mnt"
        stack.enter_context(Mount(loop.partition(4), mnt))
        assert "\ncarried:x:" in "\n" + (_deployment(mnt) / "etc/passwd").read_text()
        stack.enter_context(Mount(loop.partition(3), mnt / "boot"))
        entry = next((mnt / "boot/loader/entries").glob("*.conf")).read_text()
        assert "from.image=1" in entry


def test_a_bad_config_is_one_line_per_problem_and_builds_nothing(
        images: tuple[str, str], synthetic: SyntheticImages, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[[customizations.user]]\nname = "ok"\nshel = "/bin/sh"\n'
                      '[customizations.kernel]\nappend = "ro"\n'
                      '[customizations.iso]\nvolume_id = "x y"\n')
    out = tmp_path / "out"
    res = run_cli("build", "--type", "raw", "--output", str(out), "--config", str(config),
                  "--cache-dir", str(synthetic.cache), images[0])
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    assert [x for x in res.stderr.splitlines() if x] == [
        f"error: {config}: customizations.user[0].shel: unknown key (known: name, password, "
        "key, groups, home, shell, uid, gid, description)",
        f"error: {config}: customizations.iso.volume_id: 'x y' is not an ISO 9660 volume id "
        "(up to 32 of A-Z, 0-9, _ and -)"]
    assert not out.exists()
    # A karg the installer contradicts is refused as a --karg would be.
    config.write_text('[customizations.kernel]\nappend = "quiet ro"\n')
    res = run_cli("build", "--type", "raw", "--output", str(out), "--config", str(config),
                  "--cache-dir", str(synthetic.cache), images[0])
    assert res.returncode == 2, res.stderr
    assert "kernel argument 'ro'" in res.stderr and not out.exists()
