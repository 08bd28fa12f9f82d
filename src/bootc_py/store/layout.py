"""Turn a container image's root filesystem into the tree ostree deploys.

The image is a normal rootfs (/etc at /etc, a populated /var); ostree wants /etc at /usr/etc,
the kernel under /usr/lib/modules, an empty /boot, /sysroot and /ostree, and the mutable
toplevel directories as symlinks into /var (FACTS §2). The tree is a hardlinked checkout of the
repository, so this module only renames, unlinks and creates: it never writes into an existing
file, which would corrupt the repository object behind it.
"""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from bootc_py.errors import LintError

TMPFILES_NAME = "usr/lib/tmpfiles.d/bootc-py-ostree-layout.conf"
DPKG_DB = "usr/lib/sysimage/dpkg"

# Toplevel directories that are mutable state on a booted host: (name, symlink target,
# tmpfiles mode). Their image content moves under /var, from where the first install seeds it.
STATE_LINKS: tuple[tuple[str, str, str], ...] = (
    ("home", "var/home", "0755"),
    ("root", "var/roothome", "0700"),
    ("opt", "var/opt", "0755"),
    ("srv", "var/srv", "0755"),
    ("mnt", "var/mnt", "0755"),
    ("usr/local", "../var/usrlocal", "0755"),
)
API_DIRS = ("dev", "proc", "sys", "run", "tmp", "boot")


@dataclass(frozen=True)
class KernelInfo:
    version: str
    vmlinuz: str  # relative to the root
    initramfs: str


def find_kernel(root: Path) -> KernelInfo:
    """Exactly one kernel at usr/lib/modules/$KVER/vmlinuz with initramfs.img beside it."""
    modules = root / "usr/lib/modules"
    kernels = sorted(p.parent.name for p in modules.glob("*/vmlinuz")) if modules.is_dir() else []
    if not kernels:
        raise LintError("the image has no kernel at /usr/lib/modules/$KVER/vmlinuz",
                        "install a kernel in the image and move it there (see DESIGN.md)")
    if len(kernels) > 1:
        raise LintError(f"the image has {len(kernels)} kernels ({', '.join(kernels)}); "
                        "exactly one is supported", "remove all but one kernel from the image")
    kver = kernels[0]
    initramfs = modules / kver / "initramfs.img"
    if not initramfs.is_file():
        raise LintError(f"the image has no /usr/lib/modules/{kver}/initramfs.img",
                        "build one with dracut including the 'ostree' module")
    return KernelInfo(kver, f"usr/lib/modules/{kver}/vmlinuz",
                      f"usr/lib/modules/{kver}/initramfs.img")


def no_symlink_parents(root: Path, rel: str) -> Path:
    """root/rel, refusing a path whose parent directories inside root include a symlink.

    The tree comes from an untrusted image: a symlinked parent could redirect a rename or a
    write to the host.
    """
    current = root
    for part in Path(rel).parts[:-1]:
        current = current / part
        if current.is_symlink():
            raise LintError(f"the image has /{current.relative_to(root)} as a symlink where "
                            "bootc-py needs a directory", "make it a real directory")
    return root / rel


def _is_real_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(path.lstat().st_mode)
    except FileNotFoundError:
        return False


def _remove(path: Path) -> None:
    if _is_real_dir(path):
        shutil.rmtree(path)
    elif path.is_symlink() or path.exists():
        path.unlink()


def _empty_dir(path: Path, mode: int) -> None:
    if _is_real_dir(path):
        for child in path.iterdir():
            _remove(child)
    else:
        _remove(path)
        path.mkdir()
    path.chmod(mode)


def _move_contents(src: Path, dest: Path) -> None:
    """Move src's entries into dest (created like src if absent), then remove src."""
    if dest.is_symlink():
        dest.unlink()
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        src.rename(dest)
        return
    for child in src.iterdir():
        target = dest / child.name
        if not target.exists() and not target.is_symlink():
            child.rename(target)
        elif _is_real_dir(child) and _is_real_dir(target):
            _move_contents(child, target)
    shutil.rmtree(src)


def _write_new(path: Path, text: str) -> None:
    """Write a file as a new inode (never through a hardlink into the repository)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() or path.is_symlink():
        path.unlink()
    path.write_text(text)
    path.chmod(0o644)


def to_ostree_layout(root: Path) -> KernelInfo:
    """Rearrange `root` in place into the ostree layout; returns the kernel found."""
    for rel in ("usr/lib/modules/x", TMPFILES_NAME, DPKG_DB, "var/lib/dpkg", "usr/etc",
                "usr/local"):
        no_symlink_parents(root, rel)
    kernel = find_kernel(root)
    etc, usr_etc = root / "etc", root / "usr/etc"
    if _is_real_dir(usr_etc) and _is_real_dir(etc):
        raise LintError("the image has both /etc and /usr/etc",
                        "keep configuration in /etc; bootc-py moves it at install time")
    if _is_real_dir(etc):
        etc.rename(usr_etc)
    elif not _is_real_dir(usr_etc):
        raise LintError("the image has no /etc", "a bootable image needs /etc (passwd, fstab...)")

    for name in API_DIRS:
        _empty_dir(root / name, 0o1777 if name == "tmp" else 0o755)
    for name in ("vmlinuz", "vmlinuz.old", "initrd.img", "initrd.img.old"):
        if (root / name).is_symlink():
            (root / name).unlink()

    tmpfiles: list[str] = ["# Written by bootc-py: state the ostree layout keeps under /var."]
    var = root / "var"
    if not _is_real_dir(var):
        _remove(var)
        var.mkdir(mode=0o755)
    dpkg = var / "lib/dpkg"
    if _is_real_dir(dpkg):
        # The package database describes /usr, so it must travel with /usr, not /var.
        (root / DPKG_DB).parent.mkdir(parents=True, exist_ok=True)
        _remove(root / DPKG_DB)
        dpkg.rename(root / DPKG_DB)
    if _is_real_dir(root / DPKG_DB):
        tmpfiles.append(f"L /var/lib/dpkg - - - - ../../{DPKG_DB}")

    for name, target, mode in STATE_LINKS:
        path = root / name
        # Lexical join: the tree's own symlinks must never be followed out of it.
        var_path = os.path.normpath(os.path.join(os.path.dirname(name), target))
        if _is_real_dir(path):
            _move_contents(path, root / var_path)
        else:
            _remove(path)
        path.symlink_to(target)
        tmpfiles.append(f"d /{var_path} {mode} root root -")
    media = root / "media"
    _remove(media)
    media.symlink_to("run/media")
    tmpfiles.append("d /run/media 0755 root root -")
    tmpfiles.append("d /var/log/journal 2755 root root -")

    # systemd-gpt-auto-generator automounts the ESP at /efi when systemd-boot reports it and
    # /boot is XBOOTLDR; the deployment root is immutable, so the mount point must exist.
    if not _is_real_dir(root / "efi"):
        _remove(root / "efi")
        (root / "efi").mkdir(mode=0o755)
    sysroot = root / "sysroot"
    if not _is_real_dir(sysroot):
        _remove(sysroot)
        sysroot.mkdir(mode=0o755)
    _remove(root / "ostree")
    (root / "ostree").symlink_to("sysroot/ostree")
    _write_new(root / TMPFILES_NAME, "\n".join(tmpfiles) + "\n")
    root.chmod(0o755)  # the deployment root: whatever the layers said, / is 0755
    return kernel
