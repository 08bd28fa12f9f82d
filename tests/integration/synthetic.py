"""Small synthetic bootable images (OCI layouts) for fast install tests.

They carry what the installer checks and copies (a kernel and an initramfs that name
ostree-prepare-root, the host's real GRUB modules, a systemd-boot binary stand-in, ostree
paths) but do not boot: the booting images are vm-fixtures' and are tested under tests/vm.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fixture_image.oci import Layout, canonical_json, write_layer

KVER = "6.1.0-test-amd64"
BOOTC_PY = Path(sys.executable).parent / "bootc-py"


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str


def run_cli(*args: str, env: dict[str, str] | None = None) -> Result:
    proc = subprocess.run([str(BOOTC_PY), *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=900)
    return Result(proc.returncode, proc.stdout, proc.stderr)


@dataclass(frozen=True)
class SyntheticImages:
    layout: Path
    cache: Path

    def ref(self, tag: str) -> str:
        return f"oci:{self.layout}:{tag}"

    def manifest_digest(self, tag: str) -> str:
        """The digest the layout's index gives the image tagged `tag`."""
        index = json.loads((self.layout / "index.json").read_text())
        return next(str(m["digest"]) for m in index["manifests"]
                    if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag)


Tree = Callable[[Path], None]


def base_tree(root: Path, kernels: tuple[str, ...] = (KVER,)) -> None:
    for d in ("etc", "usr/bin", "usr/lib/ostree", "usr/lib/systemd/boot/efi", "var/lib/dpkg",
              "var/cache/app", "root", "home", "boot", "dev", "tmp", "usr/lib/bootc/install",
              "usr/lib/bootc/kargs.d"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "etc/os-release").write_text('NAME="Synthetic"\nPRETTY_NAME="Synthetic OS"\nID=syn\n')
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc/hostname").write_text("synthetic\n")
    (root / "usr/bin/ostree").write_text("#!/bin/sh\n")
    (root / "usr/lib/ostree/ostree-prepare-root").write_text("#!/bin/sh\n")
    (root / "usr/lib/systemd/boot/efi/systemd-bootx64.efi").write_bytes(b"MZ fake sd-boot\n")
    (root / "var/lib/dpkg/status").write_text("Package: synthetic\n")
    (root / "var/cache/app/seed").write_text("seeded from the image\n")
    (root / "root/.profile").write_text("# root profile\n")
    (root / "usr/lib/bootc/install/00-syn.toml").write_text(
        '[install]\nkargs = ["syn.install=1"]\n')
    (root / "usr/lib/bootc/kargs.d/10-syn.toml").write_text('kargs = ["syn.kargsd=1"]\n')
    for kver in kernels:
        mod = root / "usr/lib/modules" / kver
        mod.mkdir(parents=True)
        (mod / "vmlinuz").write_bytes(b"fake kernel " + kver.encode() * 100)
        (mod / "initramfs.img").write_bytes(
            gzip.compress(b"070701...usr/lib/ostree/ostree-prepare-root...", mtime=0))
    for platform in ("i386-pc", "x86_64-efi"):
        shutil.copytree(Path("/usr/lib/grub") / platform, root / "usr/lib/grub" / platform)


def build_image(layout_dir: Path, tag: str, trees: list[Tree], *, work: Path,
                labels: dict[str, str] | None = None) -> str:
    """Write an image of one layer per tree function into an OCI layout; returns oci:DIR:TAG."""
    layout = Layout(layout_dir)
    layout.init()
    layers = []
    for i, fill in enumerate(trees):
        tree = work / f"{tag}-tree{i}"
        if tree.exists():
            shutil.rmtree(tree)
        tree.mkdir(parents=True)
        fill(tree)
        blob = write_layer(tree, work / f"{tag}-layer{i}.tar.gz", mtime=1700000000)
        layout.put_file(blob.digest, work / f"{tag}-layer{i}.tar.gz")
        layers.append(blob)
    config = {
        "architecture": "amd64", "os": "linux", "created": "2026-01-02T03:04:05Z",
        "config": {"Labels": {"containers.bootc": "1", **(labels or {})}},
        "rootfs": {"type": "layers", "diff_ids": [b.diff_id for b in layers]},
    }
    config_bytes = canonical_json(config)
    config_digest = layout.put_bytes(config_bytes)
    manifest = {
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": len(config_bytes)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": b.digest, "size": b.size} for b in layers],
    }
    layout.tag(tag, json.dumps(manifest).encode())
    return f"oci:{layout_dir}:{tag}"
