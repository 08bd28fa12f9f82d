"""Read and write a FAT filesystem (the ESP, or a FAT image file) with mtools, never mounting it.

The host kernel may have no vfat (this one has none), and mtools works the same on a partition
node and on an image file (mkosi does the same). Paths are absolute inside the filesystem:
"/EFI/BOOT/BOOTX64.EFI". FAT compares names without regard to case.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path, PurePosixPath

from bootc_py.errors import DiskError, UsageError
from bootc_py.run import run

ENV = {"MTOOLS_SKIP_CHECK": "1"}
# mtools prints this on partitions and loop devices (no CHS geometry); it is harmless and comes
# without a newline, glued to the next message.
_NOISE = re.compile(r"Could not get geometry of device \([^)]*\)\n?")


class Esp:
    def __init__(self, device: Path | str) -> None:
        self.device = Path(device)

    # -- helpers ---------------------------------------------------------------------------

    @staticmethod
    def _norm(path: str) -> str:
        p = PurePosixPath("/" + path.strip("/"))
        if ".." in p.parts:
            raise UsageError(f"ESP path must not contain '..': {path}")
        return str(p)

    def _ref(self, path: str) -> str:
        return "::" + self._norm(path)

    def _mtools(self, tool: str, *args: str, check: bool = True) -> tuple[int, str, str]:
        res = run([tool, "-i", str(self.device), *args], check=False, capture=True, env=ENV)
        err = _NOISE.sub("", res.stderr).strip()
        if check and res.returncode != 0:
            raise DiskError(f"{tool} on {self.device} failed: {err or f'exit {res.returncode}'}")
        return res.returncode, res.stdout, err

    def _entries(self, path: str) -> dict[str, bool] | None:
        """name -> is_dir for a directory's entries; None when `path` is not a directory."""
        norm = self._norm(path)
        code, out, _ = self._mtools("mdir", "-b", "-a", "::" + norm, check=False)
        if code != 0:
            return None
        entries: dict[str, bool] = {}
        prefix = "::" + norm.rstrip("/") + "/"
        for line in out.splitlines():
            if not line.startswith(prefix):  # `mdir -b` of a file prints the file itself
                return None
            rest = line[len(prefix):]
            is_dir = rest.endswith("/")
            name = rest.rstrip("/")
            if name and name not in (".", ".."):
                entries[name] = is_dir
        return entries

    def _lookup(self, path: str) -> bool | None:
        """True for a directory, False for a file, None when missing."""
        norm = self._norm(path)
        if norm == "/":
            return True
        parent, name = str(PurePosixPath(norm).parent), PurePosixPath(norm).name
        entries = self._entries(parent)
        if entries is None:
            return None
        for entry, is_dir in entries.items():
            if entry.lower() == name.lower():
                return is_dir
        return None

    # -- API -------------------------------------------------------------------------------

    def exists(self, path: str) -> bool:
        return self._lookup(path) is not None

    def is_dir(self, path: str) -> bool:
        return self._lookup(path) is True

    def mkdir(self, path: str) -> None:
        """Create `path` and any missing parents; existing directories are fine."""
        current = PurePosixPath("/")
        for part in PurePosixPath(self._norm(path)).parts[1:]:
            current = current / part
            kind = self._lookup(str(current))
            if kind is False:
                raise DiskError(f"{self.device}: ::{current} exists and is not a directory")
            if kind is None:
                self._mtools("mmd", "::" + str(current))

    def copy(self, src: Path, dest: str) -> None:
        """Copy the file `src` to `dest` (a file path), creating parents, overwriting."""
        if not Path(src).is_file():
            raise DiskError(f"cannot copy {src} to the ESP: not a file")
        norm = self._norm(dest)
        self.mkdir(str(PurePosixPath(norm).parent))
        self._mtools("mcopy", "-o", "-n", str(src), "::" + norm)

    def copy_tree(self, src: Path, dest: str) -> None:
        """Copy the contents of directory `src` under `dest`, recursively."""
        self.mkdir(dest)
        base = self._norm(dest).rstrip("/")
        children = sorted(Path(src).iterdir())
        files = [str(c) for c in children if not c.is_dir()]
        if files:  # one mcopy per directory: the files keep their names under dest
            self._mtools("mcopy", "-o", "-n", *files, f"::{base}/")
        for child in children:
            if child.is_dir():
                self.copy_tree(child, f"{base}/{child.name}")

    def write_bytes(self, dest: str, data: bytes) -> None:
        with tempfile.TemporaryDirectory(prefix="bootc-py-esp-") as tmp:
            src = Path(tmp) / "data"
            src.write_bytes(data)
            self.copy(src, dest)

    def write_text(self, dest: str, text: str) -> None:
        self.write_bytes(dest, text.encode())

    def listdir(self, path: str = "/") -> list[str]:
        """Names in a directory, sorted (subdirectories without a trailing slash)."""
        entries = self._entries(path)
        if entries is None:
            raise DiskError(f"{self.device}: ::{self._norm(path)} is not a directory")
        return sorted(entries)

    def read(self, path: str) -> bytes:
        if self._lookup(path) is not False:
            raise DiskError(f"{self.device}: ::{self._norm(path)} is not a file")
        with tempfile.TemporaryDirectory(prefix="bootc-py-esp-") as tmp:
            out = Path(tmp) / "data"
            self._mtools("mcopy", "-n", self._ref(path), str(out))
            return out.read_bytes()

    def read_text(self, path: str) -> str:
        return self.read(path).decode()

    def remove(self, path: str) -> None:
        """Delete a file; a missing one is fine."""
        kind = self._lookup(path)
        if kind is True:
            raise DiskError(f"{self.device}: ::{self._norm(path)} is a directory")
        if kind is False:
            self._mtools("mdel", self._ref(path))

    def remove_tree(self, path: str) -> None:
        """Delete a directory and everything in it; a missing one is fine."""
        kind = self._lookup(path)
        if kind is False:
            raise DiskError(f"{self.device}: ::{self._norm(path)} is not a directory")
        if kind is True:
            if self._norm(path) == "/":
                raise UsageError("refusing to delete the root of the ESP")
            self._mtools("mdeltree", self._ref(path))

    def free_bytes(self) -> int:
        _, out, _ = self._mtools("mdir", "::/")
        for line in reversed(out.splitlines()):
            if "bytes free" in line:
                return int(re.sub(r"\D", "", line.split("bytes free")[0]))
        raise DiskError(f"{self.device}: could not read the free space (mdir printed no total)")
