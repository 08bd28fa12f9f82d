"""Disk images from a bootable image, laid out as bootc-image-builder lays them out.

One install into a sparse raw file through a loop device (generic: GRUB for BIOS and UEFI),
then `qemu-img convert` for the other formats, then a manifest with each artifact's sha256.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from bootc_py import __version__
from bootc_py import log as steplog
from bootc_py.errors import ArtifactError, UsageError
from bootc_py.installer.plan import InstallOptions, InstallPlan
from bootc_py.installer.to_disk import install_to_disk
from bootc_py.run import run

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DiskFormat:
    name: str          # the --type value
    directory: str     # bootc-image-builder's output directory
    filename: str
    qemu_format: str
    qemu_options: tuple[str, ...] = ()


FORMATS: dict[str, DiskFormat] = {
    "raw": DiskFormat("raw", "image", "disk.raw", "raw"),
    "qcow2": DiskFormat("qcow2", "qcow2", "disk.qcow2", "qcow2"),
    "vmdk": DiskFormat("vmdk", "vmdk", "disk.vmdk", "vmdk", ("-o", "subformat=streamOptimized")),
    # Azure wants a fixed-size VHD whose size is a whole number of MiB.
    "vhd": DiskFormat("vhd", "vpc", "disk.vhd", "vpc", ("-o", "subformat=fixed,force_size=on")),
}
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Artifact:
    type: str
    path: str  # relative to the output directory
    size: int
    sha256: str


@dataclass(frozen=True)
class BuildResult:
    output: Path
    artifacts: tuple[Artifact, ...]


_ZEROS = bytes(1 << 20)


def _sha256(path: Path) -> str:
    """sha256 of a (sparse) file: holes are hashed from a zero buffer instead of being read,
    which makes a mostly empty multi-GiB raw disk cheap to checksum."""
    digest = hashlib.sha256()
    size = path.stat().st_size
    with path.open("rb", buffering=0) as handle:
        fd = handle.fileno()
        buf = bytearray(1 << 20)
        view = memoryview(buf)
        pos = 0
        while pos < size:
            try:
                data = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:  # ENXIO: only a hole is left
                data = size
            while pos < data:  # a hole: zeros
                n = min(len(_ZEROS), data - pos)
                digest.update(_ZEROS[:n] if n < len(_ZEROS) else _ZEROS)
                pos += n
            if pos >= size:
                break
            hole = os.lseek(fd, pos, os.SEEK_HOLE)
            os.lseek(fd, pos, os.SEEK_SET)
            while pos < hole:
                n = handle.readinto(view[:min(len(buf), hole - pos)])
                if not n:
                    raise ArtifactError(f"{path} shrank while being checksummed")
                digest.update(view[:n])
                pos += n
    return digest.hexdigest()


def parse_types(types: Sequence[str]) -> tuple[DiskFormat, ...]:
    names: list[str] = []
    for item in types:
        for name in item.split(","):
            name = name.strip()
            if name and name not in names:
                names.append(name)
    unknown = [n for n in names if n not in FORMATS]
    if unknown:
        raise UsageError(f"unknown image type '{unknown[0]}'",
                         f"choose from: {', '.join(FORMATS)}")
    return tuple(FORMATS[n] for n in names or ["qcow2"])


def build_disk_images(formats: Sequence[DiskFormat], output: Path, opts: InstallOptions,
                      install: Callable[[Path], InstallPlan] | None = None) -> BuildResult:
    """`install` puts the system into the raw file (default: `install to-disk`'s layout;
    `build --kickstart` passes the kickstart's install) and returns its plan."""
    output.mkdir(parents=True, exist_ok=True)
    raw_dir = output / FORMATS["raw"].directory
    raw = raw_dir / FORMATS["raw"].filename
    keep_raw = any(f.name == "raw" for f in formats)
    for fmt in formats:
        existing = output / fmt.directory / fmt.filename
        if existing.exists():
            existing.unlink()  # a rebuild replaces, never appends to, an old artifact
    new_dirs = [d for d in {output / f.directory for f in formats} | {raw_dir} if not d.exists()]
    raw_dir.mkdir(exist_ok=True)
    raw.unlink(missing_ok=True)
    made: list[Path] = []  # this run's files: removed if it fails, so none looks finished
    try:
        if install is None:
            plan = install_to_disk(raw, replace(opts, generic_image=True, wipe=True),
                                   via_loopback=True).plan
        else:
            plan = install(raw)
        artifacts: list[Artifact] = []
        for fmt in formats:
            path = output / fmt.directory / fmt.filename
            if fmt.name != "raw":
                path.parent.mkdir(exist_ok=True)
                partial = path.with_name(f".{path.name}.partial")
                made += [partial, path]
                with steplog.step(f"convert-{fmt.name}", f"Converting to {fmt.name}"):
                    run(["qemu-img", "convert", "-f", "raw", "-O", fmt.qemu_format,
                         *fmt.qemu_options, str(raw), str(partial)],
                        writes=partial, needs=raw.stat().st_blocks * 512)
                    os.replace(partial, path)  # under its name only when whole
            with steplog.step(f"checksum-{fmt.name}", f"Checksumming {path.name}"):
                artifacts.append(Artifact(fmt.name, str(path.relative_to(output)),
                                          path.stat().st_size, _sha256(path)))
    except BaseException:
        raw.unlink(missing_ok=True)
        for f in made:
            f.unlink(missing_ok=True)
        for d in new_dirs:
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()
        raise
    finally:
        if not keep_raw:
            raw.unlink(missing_ok=True)
            if raw_dir.is_dir() and not any(raw_dir.iterdir()):
                raw_dir.rmdir()
    _write_manifest(output, plan, artifacts)
    if not artifacts:
        raise ArtifactError("no artifacts were built")
    return BuildResult(output, tuple(artifacts))


def _write_manifest(output: Path, plan: InstallPlan, artifacts: Sequence[Artifact],
                    disk: bool = True) -> None:
    manifest: dict[str, object] = {
        "image": plan.source, "digest": plan.manifest_digest, "target-imgref": plan.target}
    if disk:
        manifest.update({"rootfs": plan.filesystem,
                         "bootloaders": list(plan.bootloaders.names)})
    manifest.update({
        "built": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "bootc-py": __version__,
        "artifacts": [asdict(a) for a in artifacts]})
    (output / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def write_manifest(output: Path, plan: InstallPlan,
                   files: Sequence[tuple[str, Path]]) -> list[Artifact]:
    """manifest.json for artifacts that are not disk images (the ISO): each one's sha256."""
    artifacts = []
    for kind, path in files:
        with steplog.step(f"checksum-{kind}", f"Checksumming {path.name}"):
            artifacts.append(Artifact(kind, str(path.relative_to(output)),
                                      path.stat().st_size, _sha256(path)))
    _write_manifest(output, plan, artifacts, disk=False)
    return artifacts
