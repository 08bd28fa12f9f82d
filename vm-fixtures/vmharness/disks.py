"""Trees and disks for direct-kernel boots: flatten an OCI image, make an ext4 disk of it."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from vmharness.errors import VMError

ROOT_LABEL = "bootc-py-root"


def _run(argv: list[str]) -> None:
    exe = shutil.which(argv[0]) or shutil.which(argv[0], path="/usr/sbin:/sbin")
    if not exe:
        raise VMError(f"{argv[0]} is not installed (scripts/setup.sh)")
    res = subprocess.run([exe, *argv[1:]], stdin=subprocess.DEVNULL, capture_output=True,
                         text=True, check=False)
    if res.returncode != 0:
        msg = (res.stderr or res.stdout).strip().splitlines()
        raise VMError(f"{argv[0]} failed (exit {res.returncode}): {msg[-1] if msg else ''}")


@dataclass(frozen=True)
class Rootfs:
    """A flattened image tree and its kernel."""

    path: Path

    @property
    def kver(self) -> str:
        kvers = sorted(os.listdir(self.path / "usr/lib/modules"))
        if len(kvers) != 1:
            raise VMError(f"{self.path}: expected one kernel under usr/lib/modules, got {kvers}")
        return kvers[0]

    @property
    def vmlinuz(self) -> Path:
        return self.path / "usr/lib/modules" / self.kver / "vmlinuz"

    @property
    def initramfs(self) -> Path:
        return self.path / "usr/lib/modules" / self.kver / "initramfs.img"


def flatten(image_ref: str, dest: Path) -> Rootfs:
    """Unpack an `oci:DIR:TAG` image into `dest` (umoci raw unpack: layers applied in order)."""
    if not image_ref.startswith("oci:"):
        raise VMError(f"flatten takes oci:DIR:TAG, got {image_ref!r}")
    if dest.exists():
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    _run(["umoci", "raw", "unpack", "--image", image_ref[4:], str(dest)])
    return Rootfs(dest)


def make_ext4_disk(tree: Path, disk: Path, *, size_mb: int = 2048,
                   label: str = ROOT_LABEL) -> Path:
    """A raw disk image that is one ext4 filesystem (no partition table) holding `tree`.

    Boot it with the tree's own kernel: `append=f"root=LABEL={label} rw console=ttyS0"`.
    """
    disk.parent.mkdir(parents=True, exist_ok=True)
    disk.unlink(missing_ok=True)
    with open(disk, "wb") as f:
        f.truncate(size_mb * 1024 * 1024)
    _run(["mkfs.ext4", "-q", "-F", "-L", label, "-d", str(tree), str(disk)])
    return disk


def direct_boot_append(label: str = ROOT_LABEL, extra: str = "") -> str:
    """The kernel command line for a disk made by make_ext4_disk."""
    return f"root=LABEL={label} rw console=ttyS0 {extra}".strip()
