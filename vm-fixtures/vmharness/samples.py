"""The sample images as the tests and the demo use them: built (from the cache) into one OCI
layout, flattened, and made into directly bootable ext4 disks."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fixture_image import VARIANTS, BuildResult, build_images
from fixture_image.proc import run
from vmharness.disks import ROOT_LABEL, Rootfs, direct_boot_append, flatten, make_ext4_disk

SAMPLE_VARIANTS = ("v1", "v2", "broken")


@dataclass
class SampleImages:
    """The sample images in one OCI layout, tagged by variant name (v1, v2, broken)."""

    oci_dir: Path
    results: dict[str, BuildResult]
    _rootfs: dict[str, Rootfs] = field(default_factory=dict)

    @property
    def variants(self) -> tuple[str, ...]:
        return tuple(self.results)

    def ref(self, variant: str = "v1") -> str:
        """`oci:/path:v1`, the image reference bootc-py takes."""
        self._known(variant)
        return f"oci:{self.oci_dir}:{variant}"

    def manifest_digest(self, variant: str = "v1") -> str:
        return self.results[self._known(variant)].manifest_digest

    def version(self, variant: str = "v1") -> str:
        """Its org.opencontainers.image.version label."""
        return VARIANTS[self._known(variant)].version

    def layer_digests(self, variant: str = "v1") -> list[str]:
        return [b.digest for b in self.results[self._known(variant)].layers]

    def manifest(self, variant: str = "v1") -> dict[str, Any]:
        return _read_json(self.oci_dir / "blobs/sha256" / self.manifest_digest(variant)[7:])

    def config(self, variant: str = "v1") -> dict[str, Any]:
        digest = self.manifest(variant)["config"]["digest"]
        return _read_json(self.oci_dir / "blobs/sha256" / digest[7:])

    def push(self, variant: str, dest: str) -> str:
        """Copy a variant to a registry (`127.0.0.1:PORT/NAME:TAG`); returns `docker://dest`."""
        argv = ["skopeo", "copy", "--quiet"]
        if dest.startswith(("127.0.0.1", "localhost")):
            argv.append("--dest-tls-verify=false")
        run([*argv, self.ref(variant), f"docker://{dest}"])
        return f"docker://{dest}"

    def rootfs(self, variant: str, workdir: Path) -> Rootfs:
        """The variant's flattened tree (unpacked once under `workdir`)."""
        self._known(variant)
        if variant not in self._rootfs:
            self._rootfs[variant] = flatten(self.ref(variant), workdir / f"rootfs-{variant}")
        return self._rootfs[variant]

    def _known(self, variant: str) -> str:
        if variant not in self.results:
            raise KeyError(f"no sample image {variant!r} (have {', '.join(self.results)})")
        return variant


def _read_json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def build_samples(oci_dir: Path, variants: tuple[str, ...] = SAMPLE_VARIANTS) -> SampleImages:
    """Build (from the cache when unchanged) the sample variants into one layout."""
    results = build_images(list(variants), oci_dir)
    return SampleImages(oci_dir=oci_dir.resolve(), results={r.variant: r for r in results})


@dataclass(frozen=True)
class DirectBootDisk:
    """An ext4 disk of a flattened sample image, booted with the image's own kernel."""

    disk: Path
    rootfs: Rootfs
    label: str = ROOT_LABEL

    def vm_args(self, extra_append: str = "") -> dict[str, Any]:
        """kernel/initrd/append for `VM(...)` or `boot_check(...)`."""
        return {"kernel": self.rootfs.vmlinuz, "initrd": self.rootfs.initramfs,
                "append": direct_boot_append(self.label, extra_append)}


def make_direct_boot_disk(rootfs: Rootfs, disk: Path) -> DirectBootDisk:
    make_ext4_disk(rootfs.path, disk)
    return DirectBootDisk(disk=disk, rootfs=rootfs)
