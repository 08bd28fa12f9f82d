"""What the sample images are made of: recipe files, variants, and the cache keys."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent.parent          # vm-fixtures/
REPO = FIXTURES.parent
RECIPE = FIXTURES / "recipe"
GUEST = FIXTURES / "guest"
BOOTC_PY_SRC = REPO / "src" / "bootc_py"

SUITE = "bookworm"
# Bumped by hand when the layout of a layer changes in a way its inputs do not show.
FORMAT = "1"
# Layers built from staging directories get this time on every entry (2000-01-01 UTC).
STAGED_MTIME = 946684800


@dataclass(frozen=True)
class Variant:
    name: str
    version: str          # org.opencontainers.image.version
    healthy: bool         # its health check script exits 0

    @property
    def health_script(self) -> tuple[str, str]:
        """(file name under /usr/lib/greenboot/check/required.d, content)."""
        if self.healthy:
            return "10-fixture.sh", (
                "#!/bin/sh\n# bootc-py sample image: this variant is healthy.\n"
                f'echo "fixture variant {self.name}: healthy"\nexit 0\n')
        return "10-fixture-broken.sh", (
            "#!/bin/sh\n# bootc-py sample image: this variant boots but is declared unhealthy,\n"
            "# so an automatic rollback has something to undo.\n"
            f'echo "fixture variant {self.name}: deliberately unhealthy" >&2\nexit 1\n')


VARIANTS: dict[str, Variant] = {
    "v1": Variant("v1", "1", healthy=True),
    "v2": Variant("v2", "2", healthy=True),
    "broken": Variant("broken", "3", healthy=False),
}


def read_list(path: Path) -> list[str]:
    """Lines of a recipe list file without comments and blank lines."""
    out = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            out.append(line)
    return out


def _hash_files(h: hashlib._Hash, root: Path, files: list[Path]) -> None:
    for f in sorted(files):
        if "__pycache__" in f.parts or f.suffix == ".pyc" or not f.is_file():
            continue
        h.update(str(f.relative_to(root)).encode() + b"\0")
        h.update(f.read_bytes() + b"\0")


def os_layer_key() -> str:
    """The OS layer's key: the recipe files and the code that builds the layer (not bootc-py)."""
    h = hashlib.sha256(f"os\0{FORMAT}\0{SUITE}\0".encode())
    here = Path(__file__).resolve().parent
    _hash_files(h, FIXTURES, [*RECIPE.glob("os-*"), RECIPE / "dpkg-excludes.txt",
                              here / "oslayer.py", here / "oci.py"])
    return h.hexdigest()[:24]


def bootc_layer_key() -> str:
    """The bootc-py layer's key: bootc-py's source tree, the guest check files, the code."""
    h = hashlib.sha256(f"bootc-py\0{FORMAT}\0".encode())
    here = Path(__file__).resolve().parent
    _hash_files(h, REPO, [p for p in BOOTC_PY_SRC.rglob("*")])
    _hash_files(h, REPO, [*GUEST.rglob("*"), here / "bootclayer.py", here / "oci.py"])
    return h.hexdigest()[:24]
