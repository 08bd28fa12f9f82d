"""Assemble an image's OS tree from a known OS commit that shares its lower layers.

An update usually changes only its top layers. Checking every layer out again (a whole OS
tree's worth of hardlinks) and committing it costs 25 s under TCG for a 426-byte change. When
the top layers swapped are simple, the new tree is the known tree with the new top layers'
files laid over it: `ostree commit --tree=ref=BASE --tree=dir=TOP` writes only what changed.

Simple means the result is provably what the full assembly (importer.py) would build: no
whiteouts, every entry of the layers swapped out is replaced by one of the same type in the
layers swapped in (an overlay cannot delete), and nothing that the ostree layout
(layout.py) rearranges beyond /etc moving to /usr/etc. Anything else takes the full path.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from bootc_py.run import output, run
from bootc_py.store.layout import DPKG_DB, TMPFILES_NAME
from bootc_py.store.repo import OstreeRepo

# Paths under /usr that the layout writes or checks itself: a layer touching them takes the
# full assembly.
_LAYOUT_OWNED = ("usr/local", "usr/etc", "usr/lib/modules", DPKG_DB, TMPFILES_NAME)


# More entries than this in the top layers: the paths would not fit one command line.
MAX_ENTRIES = 5000
NO_XATTRS = "{ @a(ayay) [] }"
# A directory bootc-py creates itself (the overlay's root, /usr when only /etc comes).
PLAIN_DIR = f"d00755 0 0 {NO_XATTRS}"


@dataclass(frozen=True)
class Entry:
    kind: str  # '-', 'd' or 'l'
    path: str  # relative, in the ostree layout (etc/x is usr/etc/x)
    meta: str  # mode, uid, gid and xattrs as `ostree ls -X` prints them


@dataclass(frozen=True)
class Plan:
    """Lay the commits `added` (layer commits, bottom first) over `base`'s root tree (none:
    the same layers, another config: the base's tree as it is)."""

    base: str
    added: tuple[str, ...]


def diff_ids_of(config_text: str | None) -> tuple[str, ...]:
    if not config_text:
        return ()
    try:
        config = json.loads(config_text)
        return tuple(str(x) for x in (config.get("rootfs") or {}).get("diff_ids", []))
    except (ValueError, AttributeError):
        return ()


Row = tuple[str, str, str]  # (kind, meta, path) of one `ostree ls -X` line


def _parse(text: str) -> list[Row]:
    """Rows of `ostree ls -X` output; ValueError on a line that is not plain (xattrs, a name
    with an arrow): those take the full assembly."""
    rows = []
    marker = f" {NO_XATTRS} "
    for line in text.splitlines():
        if len(line.split(None, 4)) != 5 or marker not in line:
            raise ValueError(line)
        head, name = line.split(marker, 1)
        mode, uid, gid = head.split()[:3]
        kind = mode[0]
        if kind == "l":
            if name.count(" -> ") != 1:
                raise ValueError(line)
            name = name.split(" -> ")[0]
        elif kind not in "-d" or " -> " in name:
            raise ValueError(line)
        rows.append((kind, f"{mode} {uid} {gid} {NO_XATTRS}", name))
    return rows


def _ls(repo: OstreeRepo, *args: str) -> list[Row]:
    return _parse(output(["ostree", f"--repo={repo.path}", "ls", "-X", *args]))


def _lookup(repo: OstreeRepo, base: str, paths: list[str]) -> dict[str, tuple[str, str]]:
    """kind and meta of each path the base has. `ostree ls -d` stops at the first path it
    lacks: that one and everything under it is new, and the rest is asked again, so a new
    directory tree costs one more call, not one per file."""
    found: dict[str, tuple[str, str]] = {}
    todo = sorted(set(paths), key=lambda p: PurePosixPath(p).parts)
    while todo:
        res = run(["ostree", f"--repo={repo.path}", "ls", "-X", "-d", base, *todo],
                  check=False, capture=True)
        rows = _parse(res.stdout)
        found.update({name: (kind, meta) for kind, meta, name in rows})
        if res.returncode == 0:
            break
        if len(rows) >= len(todo) or f"'{todo[len(rows)]}'" not in res.stderr:
            raise ValueError(res.stderr.strip()[-200:])  # not the missing-path failure
        missing = PurePosixPath(todo[len(rows)])
        todo = [p for p in todo[len(rows) + 1:] if not PurePosixPath(p).is_relative_to(missing)]
    return found


def layer_entries(repo: OstreeRepo, commit: str) -> list[Entry] | None:
    """A layer commit's entries mapped into the ostree layout, or None if any is not simple."""
    names = output(["ostree", f"--repo={repo.path}", "ls", "-R", "--nul-filenames-only",
                    commit])
    if "\n" in names or "\ufffd" in names:
        return None  # a name `ls` cannot print one per line, or not UTF-8: look no further
    try:
        rows = _ls(repo, "-R", commit)
    except ValueError:
        return None
    entries: list[Entry] = []
    for kind, meta, name in rows:
        rel = mapped(name, kind)
        if rel is None:
            return None
        if rel:
            entries.append(Entry(kind, rel, meta))
    return entries


def mapped(name: str, kind: str) -> str | None:
    """`/etc/x` -> `usr/etc/x`, `/usr/y` -> `usr/y`, `/` -> ``; None for what only the full
    assembly handles (whiteouts, paths the layout rearranges or owns)."""
    parts = PurePosixPath(name).parts[1:]
    if not parts:
        return ""
    if any(p.startswith(".wh.") for p in parts):
        return None
    if parts[0] == "etc":
        return None if len(parts) == 1 and kind != "d" else str(PurePosixPath("usr", *parts))
    if parts[0] != "usr":
        return None  # /var, the state links, the API dirs: the layout rearranges them
    rel = str(PurePosixPath(*parts))
    if any(rel == owned or rel.startswith(owned + "/") for owned in _LAYOUT_OWNED):
        return None
    return rel


def plan(repo: OstreeRepo, new_layers: Sequence[str], candidates: Iterable[str],
         layer_of: Callable[[str], str | None],
         config_of: Callable[[str], str | None]) -> Plan | None:
    """The candidate OS commit sharing the longest run of lower layers with `new_layers`
    (diff_ids) whose swapped layers are simple, or None.

    `layer_of` gives a diff_id's layer commit (None: not in the repository); `config_of`
    reads a candidate's image config text."""
    best: tuple[int, str, list[str], list[str]] | None = None
    for commit in candidates:
        old_layers = diff_ids_of(config_of(commit))
        shared = 0
        while (shared < min(len(old_layers), len(new_layers))
               and old_layers[shared] == new_layers[shared]):
            shared += 1
        if shared == 0:
            continue
        layers = [layer_of(x) for x in (*old_layers[shared:], *new_layers[shared:])]
        if None in layers or (best is not None and shared <= best[0]):
            continue
        swapped = [x for x in layers if x is not None]
        removed = swapped[:len(old_layers) - shared]
        best = (shared, commit, removed, swapped[len(removed):])
    if best is None:
        return None
    _, base, removed, added = best
    removed_entries = _entries(repo, removed)
    added_entries = _entries(repo, added)
    if removed_entries is None or added_entries is None:
        return None
    added_kinds = {e.path: e.kind for e in added_entries}
    if any(added_kinds.get(e.path) != e.kind for e in removed_entries):
        return None  # something the old top layers brought would stay: an overlay can't delete
    if not _fits(repo, base, added_entries):
        return None
    return Plan(base, tuple(added))


def _entries(repo: OstreeRepo, commits: list[str]) -> list[Entry] | None:
    out: dict[str, Entry] = {}
    for commit in commits:
        entries = layer_entries(repo, commit)
        if entries is None:
            return None
        for entry in entries:
            prev = out.get(entry.path)
            if prev and prev.kind == entry.kind == "d":
                continue  # a union checkout keeps the lower directory's metadata
            out[entry.path] = entry
    return list(out.values())


def _fits(repo: OstreeRepo, base: str, entries: list[Entry]) -> bool:
    """What the full assembly's union checkout would give: a directory the layers bring that
    the base has keeps the base's metadata, so it must be the same; a file or symlink
    replaces a non-directory."""
    wanted = {"": PLAIN_DIR}  # the overlay's root
    if any(e.path.startswith("usr/") for e in entries) and \
            not any(e.path == "usr" for e in entries):
        wanted["usr"] = PLAIN_DIR  # checkout_top creates it for /etc's move
    if len(entries) > MAX_ENTRIES:
        return False
    try:
        found = _lookup(repo, base, ["/" + e.path for e in entries] + ["/" + p for p in wanted])
    except ValueError:
        return False
    for rel, meta in wanted.items():
        if found.get("/" + rel, ("d", meta)) != ("d", meta):
            return False
    for entry in entries:
        kind, meta = found.get("/" + entry.path, (entry.kind, entry.meta))
        if (entry.kind == "d") != (kind == "d"):
            return False
        if kind == "d" and meta != entry.meta:
            return False
    return True


def checkout_top(repo: OstreeRepo, plan: Plan, dest: Path) -> None:
    """The added layers, in order, as a tree in the ostree layout under `dest`."""
    for commit in plan.added:
        repo.checkout(commit, dest, union=True)
    etc = dest / "etc"
    if etc.is_dir() and not etc.is_symlink():
        (dest / "usr").mkdir(mode=0o755, exist_ok=True)
        etc.rename(dest / "usr/etc")
    dest.chmod(0o755)
