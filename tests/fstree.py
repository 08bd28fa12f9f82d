"""Snapshot a directory tree for equality checks: type, mode, uid/gid, size, content hash,
link target, device numbers, xattrs, mtimes and hard-link identity (files sharing an inode are
grouped by the first path of the group)."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Any

IGNORED_XATTRS = {"security.selinux"}


def _xattrs(path: str) -> dict[str, bytes]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    return {n: os.getxattr(path, n, follow_symlinks=False) for n in sorted(names)
            if n not in IGNORED_XATTRS}


def snapshot(root: Path, *, mtimes: bool = True, dir_mtimes: bool = True) -> dict[str, Any]:
    """{relative path: description}; "." is the root itself."""
    root = Path(root)
    out: dict[str, Any] = {}
    inodes: dict[tuple[int, int], str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in [".", *sorted(dirnames + filenames)] if dirpath == str(root) else sorted(
                dirnames + filenames):
            path = os.path.join(dirpath, name) if name != "." else dirpath
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            kind = stat.S_IFMT(st.st_mode)
            d: dict[str, Any] = {"type": kind, "mode": oct(stat.S_IMODE(st.st_mode)),
                                 "uid": st.st_uid, "gid": st.st_gid,
                                 "xattrs": _xattrs(path)}
            if stat.S_ISREG(kind):
                h = hashlib.sha256()
                with open(path, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
                d["size"] = st.st_size
                d["sha256"] = h.hexdigest()
                key = (st.st_dev, st.st_ino)
                if st.st_nlink > 1:
                    d["link_group"] = inodes.setdefault(key, rel)
            elif stat.S_ISLNK(kind):
                d["target"] = os.readlink(path)
                del d["mode"]
            elif stat.S_ISCHR(kind) or stat.S_ISBLK(kind):
                d["rdev"] = (os.major(st.st_rdev), os.minor(st.st_rdev))
            if mtimes and (dir_mtimes or not stat.S_ISDIR(kind)):
                d["mtime"] = st.st_mtime_ns
            out[rel] = d
    return out


def diff(a: dict[str, Any], b: dict[str, Any], limit: int = 20) -> list[str]:
    """Human-readable differences between two snapshots (empty when equal)."""
    lines = []
    for path in sorted(set(a) | set(b)):
        if path not in a:
            lines.append(f"only in second: {path}")
        elif path not in b:
            lines.append(f"only in first: {path}")
        elif a[path] != b[path]:
            keys = sorted(k for k in set(a[path]) | set(b[path])
                          if a[path].get(k) != b[path].get(k))
            lines.append(f"{path}: " + ", ".join(
                f"{k}: {a[path].get(k)!r} != {b[path].get(k)!r}" for k in keys))
        if len(lines) >= limit:
            lines.append("...")
            break
    return lines
