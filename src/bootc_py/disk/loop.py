"""Loop devices over disk image files, as context managers.

On this kind of host `losetup -P` shows no partitions: the kernel's scan finds none on a loop
device, so partitions are added with `partx` and waited for.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from types import TracebackType

from bootc_py.disk.devices import (
    kernel_partitions,
    partition_path,
    reread_partitions,
    wait_for_partitions,
)
from bootc_py.errors import BootcPyError, DiskError, UsageError
from bootc_py.run import DEVICE_TIMEOUT, output, run

log = logging.getLogger(__name__)

DETACH_TIMEOUT = 15.0


def create_sparse(file: Path, size: int) -> Path:
    """Create (or empty and resize) `file` as a sparse file of `size` bytes."""
    if size <= 0:
        raise UsageError(f"invalid disk size {size}")
    file = Path(file)
    file.parent.mkdir(parents=True, exist_ok=True)
    with open(file, "wb") as f:  # truncates: an old image's blocks must not leak through
        f.truncate(size)
    return file


def loops_of(file: Path) -> list[Path]:
    """Loop devices currently attached to `file` (for checks and cleanup of our own files)."""
    text = output(["losetup", "--associated", str(Path(file).resolve()), "--noheadings",
                   "--output", "NAME"], timeout=DEVICE_TIMEOUT)
    return [Path(line.strip()) for line in text.splitlines() if line.strip()]


def table_partitions(device: Path) -> dict[int, tuple[int, int]]:
    """Partitions in the table on `device` (read by partx, not the kernel's view)."""
    res = run(["partx", "--show", "--bytes", "--noheadings", "--output", "NR,START,SECTORS",
               str(device)], check=False, capture=True, timeout=DEVICE_TIMEOUT)
    if res.returncode != 0:  # no partition table
        return {}
    # partx reports START and SECTORS in 512-byte units whatever the sector size.
    out = {}
    for line in res.stdout.splitlines():
        nr, start, sectors = (int(x) for x in line.split())
        out[nr] = (start * 512, sectors * 512)
    return out


class LoopDevice:
    """`with LoopDevice(file) as loop:` attaches `file` (partitions included), detaches on exit
    and waits until the kernel has really let go of it."""

    def __init__(self, file: Path, *, sector_size: int | None = None,
                 read_only: bool = False) -> None:
        self.file = Path(file)
        self.sector_size = sector_size
        self.read_only = read_only
        self._path: Path | None = None

    @property
    def path(self) -> Path:
        if self._path is None:
            raise DiskError(f"no loop device is attached to {self.file}")
        return self._path

    def partition(self, number: int) -> Path:
        return partition_path(self.path, number)

    def __fspath__(self) -> str:
        return str(self.path)

    def attach(self) -> Path:
        if self._path is not None:
            return self._path
        if not self.file.is_file():
            raise DiskError(f"disk image {self.file} does not exist")
        argv = ["losetup", "--find", "--show", "--partscan"]
        if self.sector_size:
            argv += ["--sector-size", str(self.sector_size)]
        if self.read_only:
            argv.append("--read-only")
        self._path = Path(output([*argv, str(self.file)], timeout=DEVICE_TIMEOUT))
        log.debug("attached %s to %s", self.file, self._path)
        try:
            self.rescan()
        except BaseException:
            self.detach()
            raise
        return self._path

    def rescan(self) -> None:
        """Make the kernel's partitions match the table (after writing one) and wait for the
        nodes."""
        wanted = table_partitions(self.path)
        if wanted or kernel_partitions(self.path):
            reread_partitions(self.path)
        wait_for_partitions(self.path, wanted)

    def detach(self) -> None:
        if self._path is None:
            return
        path, self._path = self._path, None
        sysdir = Path("/sys/block") / path.name
        run(["losetup", "--detach", str(path)], check=False, timeout=DEVICE_TIMEOUT)
        # Detaching a device that is still open only marks it for autoclear: wait until the
        # binding (sys/block/loopN/loop) and the partitions are gone.
        deadline = time.monotonic() + DETACH_TIMEOUT
        while (sysdir / "loop").exists() or _has_partitions(sysdir):
            if time.monotonic() > deadline:
                raise DiskError(f"loop device {path} is still busy after detaching it",
                                f"something still holds it open: try 'fuser -vm {path}'")
            time.sleep(0.05)
        log.debug("detached %s", path)

    def __enter__(self) -> LoopDevice:
        self.attach()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            self.detach()
        except BootcPyError:
            if exc is None:
                raise
            # Don't hide the error that got us here.
            log.error("while cleaning up: could not detach %s", self.file, exc_info=True)


def _has_partitions(sysdir: Path) -> bool:
    try:
        return any((child / "partition").exists() for child in sysdir.iterdir())
    except OSError:
        return False

