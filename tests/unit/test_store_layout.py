"""The ostree-layout transform, on real directories (no programs run)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bootc_py.errors import LintError
from bootc_py.store.layout import TMPFILES_NAME, find_kernel, to_ostree_layout


def make_rootfs(root: Path, kernels: tuple[str, ...] = ("6.1.0-1-amd64",)) -> Path:
    for d in ("etc", "var/lib/dpkg", "var/cache", "home/alice", "root", "opt/app", "srv",
              "mnt", "media/cdrom", "usr/local/bin", "usr/bin", "dev", "proc", "sys", "run/x",
              "tmp/junk", "boot"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "etc/os-release").write_text("ID=debian\n")
    (root / "var/lib/dpkg/status").write_text("Package: x\n")
    (root / "var/cache/keep").write_text("seed me\n")
    (root / "root/.bashrc").write_text("# root\n")
    (root / "home/alice/notes").write_text("hi\n")
    (root / "opt/app/run").write_text("#!/bin/sh\n")
    (root / "usr/local/bin/tool").write_text("#!/bin/sh\n")
    (root / "boot/vmlinuz-old").write_text("stale\n")
    (root / "tmp/junk/x").write_text("x\n")
    for kver in kernels:
        mod = root / "usr/lib/modules" / kver
        mod.mkdir(parents=True)
        (mod / "vmlinuz").write_text("kernel\n")
        (mod / "initramfs.img").write_text("initramfs\n")
    os.symlink("boot/vmlinuz-old", root / "vmlinuz")
    return root


def test_layout_moves_state_under_var_and_etc_under_usr(tmp_path: Path) -> None:
    root = make_rootfs(tmp_path / "root")
    root.chmod(0o700)
    kernel = to_ostree_layout(root)
    assert kernel.version == "6.1.0-1-amd64"
    assert (root / "usr/etc/os-release").read_text() == "ID=debian\n"
    assert not (root / "etc").exists()
    # Mutable toplevel dirs are symlinks into /var, their content moved there to be seeded.
    expected = {"home": "var/home", "root": "var/roothome", "opt": "var/opt", "srv": "var/srv",
                "mnt": "var/mnt", "media": "run/media", "ostree": "sysroot/ostree",
                "usr/local": "../var/usrlocal"}
    for name, target in expected.items():
        assert os.readlink(root / name) == target, name
    assert (root / "var/roothome/.bashrc").read_text() == "# root\n"
    assert (root / "var/home/alice/notes").read_text() == "hi\n"
    assert (root / "var/usrlocal/bin/tool").exists()
    assert (root / "var/cache/keep").exists()
    # The package database travels with /usr; /var/lib/dpkg becomes a tmpfiles symlink.
    assert (root / "usr/lib/sysimage/dpkg/status").exists()
    assert not (root / "var/lib/dpkg").exists()
    tmpfiles = (root / TMPFILES_NAME).read_text()
    assert "L /var/lib/dpkg - - - - ../../usr/lib/sysimage/dpkg" in tmpfiles
    assert "d /var/roothome 0700 root root -" in tmpfiles
    assert "d /var/usrlocal 0755 root root -" in tmpfiles
    # API filesystems and /boot are empty; /tmp is sticky; /sysroot exists.
    for name in ("boot", "dev", "proc", "sys", "run", "tmp"):
        assert list((root / name).iterdir()) == [], name
    assert (root / "tmp").stat().st_mode & 0o7777 == 0o1777
    assert (root / "sysroot").is_dir() and (root / "efi").is_dir()
    assert not os.path.lexists(root / "vmlinuz")
    assert root.stat().st_mode & 0o7777 == 0o755


def test_layout_never_writes_through_existing_files(tmp_path: Path) -> None:
    """The tree is a hardlinked checkout: an existing file must be replaced, not rewritten."""
    root = make_rootfs(tmp_path / "root")
    conf = root / TMPFILES_NAME
    conf.parent.mkdir(parents=True)
    outside = tmp_path / "repo-object"
    outside.write_text("object content\n")
    os.link(outside, conf)
    to_ostree_layout(root)
    assert outside.read_text() == "object content\n"
    assert "bootc-py" in conf.read_text()


def test_layout_refuses_symlinked_parent_escaping_the_tree(tmp_path: Path) -> None:
    root = make_rootfs(tmp_path / "root")
    victim = tmp_path / "victim"
    victim.mkdir()
    (root / "usr/lib/sysimage").parent.mkdir(parents=True, exist_ok=True)
    os.symlink(str(victim), root / "usr/lib/sysimage")
    with pytest.raises(LintError, match="symlink"):
        to_ostree_layout(root)
    assert list(victim.iterdir()) == []


def test_state_dir_symlink_in_var_is_not_followed(tmp_path: Path) -> None:
    root = make_rootfs(tmp_path / "root")
    victim = tmp_path / "victim"
    victim.mkdir()
    os.symlink(str(victim), root / "var/roothome")
    to_ostree_layout(root)
    assert list(victim.iterdir()) == []
    assert (root / "var/roothome/.bashrc").exists()


@pytest.mark.parametrize(("kernels", "message"), [
    ((), "no kernel"),
    (("6.1.0-1-amd64", "6.1.0-2-amd64"), "2 kernels"),
])
def test_kernel_count(tmp_path: Path, kernels: tuple[str, ...], message: str) -> None:
    root = make_rootfs(tmp_path / "root", kernels)
    with pytest.raises(LintError, match=message):
        find_kernel(root)


def test_missing_initramfs(tmp_path: Path) -> None:
    root = make_rootfs(tmp_path / "root")
    (root / "usr/lib/modules/6.1.0-1-amd64/initramfs.img").unlink()
    with pytest.raises(LintError, match="initramfs"):
        to_ostree_layout(root)
