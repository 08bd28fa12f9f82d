"""A thin, typed wrapper over the `ostree` CLI for one repository.

Debian 12's ostree (2022.7) has no `ostree container`; bootc-py does the OCI side itself and
uses only plain repository operations, all through run().
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bootc_py.errors import CommandError, StoreError
from bootc_py.run import output, run

# The refs bootc-py writes (store/importer.py): always local, under refs/heads.
OWN_REF_PREFIX = "bootc-py/"


@dataclass(frozen=True)
class OstreeRepo:
    """`fsync`: a commit's objects reach the disk before its ref names them (ostree's
    default). Without it a power cut can leave a ref, or an object that exists under its
    name, whose content never reached the disk: fine for a fresh install (synced once at
    its end, and never used half-done), not for an installed host's repository."""

    path: Path
    fsync: bool = False

    def _argv(self, *args: str | os.PathLike[str]) -> list[str]:
        return ["ostree", f"--repo={self.path}", *[os.fspath(a) for a in args]]

    def exists(self) -> bool:
        return (self.path / "config").is_file() and (self.path / "objects").is_dir()

    def init(self, mode: str = "bare") -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        run(self._argv("init", f"--mode={mode}"))

    def rev_parse(self, ref: str) -> str | None:
        """The commit a ref points to, or None if the ref does not exist."""
        # Local refs are files holding the checksum: read them without starting ostree.
        head = self.path / "refs" / "heads" / ref
        if ".." not in ref.split("/") and head.is_file():
            text = head.read_text().strip()
            if len(text) == 64 and all(c in "0123456789abcdef" for c in text):
                return text
        if ref.startswith(OWN_REF_PREFIX) and not head.exists():
            return None  # bootc-py's refs are local only: a missing file is a missing ref
        res = run(self._argv("rev-parse", ref), check=False, capture=True)
        if res.returncode != 0:
            return None
        return res.stdout.strip()

    def has_commit(self, checksum: str) -> bool:
        return (self.path / "objects" / checksum[:2] / f"{checksum[2:]}.commit").is_file()

    def refs(self, prefix: str = "") -> list[str]:
        """Local refs (full names) under `prefix`."""
        heads = self.path / "refs" / "heads"
        if prefix and ".." not in prefix.split("/") and heads.is_dir():
            # Local refs are files under refs/heads: walk them without starting ostree.
            base = heads / prefix
            if base.is_file():
                return [prefix]
            return sorted(str(p.relative_to(heads)) for p in base.rglob("*") if p.is_file())
        args = ["refs"]
        if prefix:
            args += ["--list", prefix]
        out = output(self._argv(*args))
        return sorted(line.strip() for line in out.splitlines() if line.strip())

    def metadata(self, rev: str, key: str) -> str | None:
        """A commit's string metadata value, or None if the key is absent."""
        res = run(self._argv("show", f"--print-metadata-key={key}", rev), check=False,
                  capture=True)
        if res.returncode != 0:
            if "No such metadata key" in res.stderr:
                return None
            raise CommandError(res.args, res.returncode, res.stderr)
        return _unquote_gvariant_string(res.stdout.strip())

    def commit(
        self,
        tree: Path | str,
        *,
        branch: str,
        subject: str,
        metadata: Mapping[str, str] | None = None,
        bootable: bool = False,
        consume: bool = False,
        link_speedup: bool = False,
        timestamp: str | None = None,
        over: str | None = None,
        extra: Sequence[str] = (),
    ) -> str:
        # A Path is a directory to commit; a str is a commit whose root tree is taken as is
        # (no checkout: the same image under another name costs one small commit object).
        # `over`: the directory is laid over that commit's tree (files replace, directories
        # merge and take the directory's metadata).
        source = [f"--tree=dir={tree}"] if isinstance(tree, Path) else [f"--tree=ref={tree}"]
        if over:
            source.insert(0, f"--tree=ref={over}")
        args: list[str] = ["commit", f"--branch={branch}", *source,
                           f"--subject={subject}", "--no-bindings",
                           f"--fsync={'true' if self.fsync else 'false'}"]
        for key, value in (metadata or {}).items():
            args.append(f"--add-metadata-string={key}={value}")
        if bootable:
            args.append("--bootable")
        if consume:
            args.append("--consume")
        if link_speedup:
            # The tree is a hardlinked checkout whose linked files are never written to
            # (store/layout.py only renames, unlinks and creates): trust dev/ino, skip rehashing.
            args.append("--devino-canonical")
        if timestamp:
            args.append(f"--timestamp={timestamp}")
        args.extend(extra)
        try:
            return output(self._argv(*args)).strip()
        except CommandError as exc:
            raise StoreError(f"ostree commit of {branch} failed: {exc.stderr.strip()[-300:]}",
                             "the image may contain content ostree cannot store") from exc

    def checkout(self, rev: str, dest: Path, *, union: bool = False, whiteouts: bool = False,
                 hardlinks: bool = True, subpath: str | None = None,
                 copy: bool = False) -> None:
        """`copy` makes private files (never hardlinks into the repository)."""
        args: list[str] = ["checkout", "--fsync=false"]
        if copy:
            args.append("--force-copy")
        if union:
            args.append("--union")
        if whiteouts:
            args.append("--whiteouts")
        if hardlinks and not copy:
            args.append("--require-hardlinks")
        if subpath:
            args.append(f"--subpath={subpath}")
        run(self._argv(*args, rev, dest))

    def file_type(self, rev: str, path: str) -> str | None:
        """'-' (regular file), 'd', 'l'... of `path` in a commit, or None if absent."""
        res = run(self._argv("ls", "-d", rev, path), check=False, capture=True)
        if res.returncode != 0 or not res.stdout.strip():
            return None
        return res.stdout.strip()[0]

    def config_set(self, key: str, value: str) -> None:
        run(self._argv("config", "set", key, value))


_GVARIANT_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"'}


def _unquote_gvariant_string(text: str) -> str:
    """`ostree show --print-metadata-key` prints GVariant text: 'value' with escapes."""
    if len(text) < 2 or text[0] != text[-1] or text[0] not in "'\"":
        return text
    body, out, i = text[1:-1], [], 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            if nxt in _GVARIANT_ESCAPES:
                out.append(_GVARIANT_ESCAPES[nxt])
                i += 2
                continue
            if nxt == "u" and i + 5 < len(body):
                out.append(chr(int(body[i + 2:i + 6], 16)))
                i += 6
                continue
        out.append(ch)
        i += 1
    return "".join(out)


def escape_ref_component(text: str) -> str:
    """Make an arbitrary string one valid ostree ref component (ostree-ext's style)."""
    out: list[str] = []
    for ch in text:
        if ch.isascii() and (ch.isalnum() or ch in "-."):
            out.append(ch)
        else:
            out.extend(f"_{b:02X}_" for b in ch.encode())
    return "".join(out)
