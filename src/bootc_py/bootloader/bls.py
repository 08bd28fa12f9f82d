"""Boot Loader Specification (type 1) entries, as ostree writes them into /boot/loader/entries."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from bootc_py.errors import BootloaderError


@dataclass(frozen=True)
class BlsEntry:
    filename: str
    title: str
    version: str
    linux: str
    initrd: tuple[str, ...]
    options: str

    @property
    def sort_key(self) -> tuple[int, str]:
        """ostree gives the default deployment the highest `version`."""
        try:
            return (int(self.version), self.filename)
        except ValueError:
            return (-1, self.filename)

    @property
    def ostree_path(self) -> str | None:
        match = re.search(r"(?:^|\s)ostree=(\S+)", self.options)
        return match.group(1) if match else None


def parse_entry(filename: str, text: str) -> BlsEntry:
    fields: dict[str, str] = {}
    initrd: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        value = value.strip()
        if key == "initrd":
            initrd.append(value)
        else:
            fields[key] = value
    if "linux" not in fields:
        raise BootloaderError(f"boot entry {filename} has no 'linux' line")
    return BlsEntry(filename=filename, title=fields.get("title", filename),
                    version=fields.get("version", "0"), linux=fields["linux"],
                    initrd=tuple(initrd), options=fields.get("options", ""))


def read_entries(boot: Path) -> list[BlsEntry]:
    """Entries under <boot>/loader/entries, default (highest version) first.

    ostree swaps /boot/loader (a symlink) atomically, so reading through it sees one
    consistent set.
    """
    entries_dir = boot / "loader" / "entries"
    if not entries_dir.is_dir():
        return []
    entries = [parse_entry(p.name, p.read_text()) for p in sorted(entries_dir.glob("*.conf"))]
    return sorted(entries, key=lambda e: e.sort_key, reverse=True)
