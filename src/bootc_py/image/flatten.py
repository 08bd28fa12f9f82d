"""Apply image layers to a directory: the rootfs of an image, as umoci and containerd make it.

Semantics: OCI whiteouts (`.wh.NAME`) and opaque directories (`.wh..wh..opq`) remove what lower
layers left (never what this layer itself created); an entry replaces whatever was at its path
(a directory over a directory is merged); hard links may point at files of earlier layers;
devices, fifos, numeric uid/gid, modes with setuid/setgid/sticky, xattrs (security.capability
included, set after chown, which would clear it) and mtimes are restored. A directory's mtime is
the one of the last layer that listed it (creating children does not disturb it).

Safety: whatever the tar says, nothing outside `dest` is created, changed or removed. Entry names
with `..` are refused; every parent directory is resolved component by component with lstat,
and a symlink on the way is followed *inside* dest (as if dest were /), never out of it. The final
component is never followed: the old entry is removed and a new one created with O_EXCL, and hard
link targets are resolved the same way. Memory does not grow with layer size (streaming), only
with the number of paths of a layer (kept to honour whiteouts, like umoci does).
"""

from __future__ import annotations

import contextlib
import enum
import errno
import hashlib
import logging
import os
import shutil
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bootc_py import log as blog
from bootc_py.errors import DigestMismatchError, ImageError, UnsafePathError, UnsupportedError
from bootc_py.image import digest as dg
from bootc_py.image import mediatypes as mt
from bootc_py.image.tarstream import (
    BLK,
    CHR,
    DIR,
    FIFO,
    HARDLINK,
    REG,
    SYMLINK,
    Prefetch,
    TarEntry,
    TarReader,
    decompressed_chunks,
    sniff,
)
from bootc_py.nospace import no_space

if TYPE_CHECKING:
    from bootc_py.image.source import Image

log = logging.getLogger(__name__)

WHITEOUT_PREFIX = ".wh."
OPAQUE = ".wh..wh..opq"
# Host-specific xattrs a layer must not set (umoci ignores the same ones).
IGNORED_XATTRS = frozenset({"security.selinux", "system.nfs4_acl"})
_MAX_LINKS = 40  # symlinks followed while resolving one path (Linux: 40)
_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class WhiteoutMode(enum.Enum):
    APPLY = "apply"  # delete what whiteouts name (flattening)
    RECORD = "record"  # touch nothing for them; report them in LayerResult


@dataclass(frozen=True)
class LayerResult:
    whiteouts: tuple[str, ...] = ()  # paths relative to the root, e.g. "usr/bin/foo"
    opaque_dirs: tuple[str, ...] = ()  # e.g. "etc/x"; "" is the root itself
    skipped: tuple[str, ...] = ()  # special files left out (skip_special)
    entries: int = 0
    bytes_written: int = 0


def _split(name: str, what: str) -> list[str]:
    """Path components of a tar name; "/" and "./" prefixes are dropped, ".." is refused."""
    parts = [p for p in name.split("/") if p and p != "."]
    if ".." in parts:
        raise UnsafePathError(f"{what}: entry '{name}' contains '..' (path traversal refused)")
    if "\0" in name:
        raise UnsafePathError(f"{what}: entry {name!r} contains a NUL byte")
    return parts


# Given a hard link's target (a path relative to the root, from a lower layer), a private
# file holding it, with its metadata, on the destination's filesystem; None if unknown.
LinkSource = Callable[[str], "Path | None"]


class _Applier:
    def __init__(self, dest: Path, whiteouts: WhiteoutMode, skip_special: bool,
                 what: str, link_source: LinkSource | None = None) -> None:
        self.root = os.path.abspath(dest)
        self.link_source = link_source
        self.apply_whiteouts = whiteouts is WhiteoutMode.APPLY
        self.skip_special = skip_special
        self.what = what
        self.is_root = os.geteuid() == 0
        self._dirs: dict[str, str] = {}  # tar dir path -> resolved real path (cache)
        self._upper: set[str] = set()  # real paths this layer created, and their parents
        self._times: dict[str, tuple[int, int]] = {}  # dir -> (atime, mtime) to set at the end
        self.whiteouts: list[str] = []
        self.opaque: list[str] = []
        self.skipped: list[str] = []
        self.entries = 0
        self.written = 0

    # Resolution inside the root.

    def _resolve_dir(self, parts: list[str], create: bool) -> str | None:
        """The real path of the directory `parts` names, symlinks followed inside the root.

        Missing directories are created (mode 0755) when `create`, else None is returned."""
        key = "/".join(parts)
        hit = self._dirs.get(key)
        if hit is not None:
            return hit
        real: list[str] = []
        pending = list(reversed(parts))
        links = 0
        while pending:
            comp = pending.pop()
            if comp in ("", "."):
                continue
            if comp == "..":  # only from symlink targets: clamp at the root like chroot
                if real:
                    real.pop()
                continue
            path = self.root + "".join("/" + c for c in real) + "/" + comp
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                if not create:
                    return None
                self._mark_parent(path)
                os.mkdir(path)
                os.chmod(path, 0o755)  # whatever the umask: the same tree every time
                real.append(comp)
                continue
            if stat.S_ISDIR(st.st_mode):
                real.append(comp)
            elif stat.S_ISLNK(st.st_mode):
                links += 1
                if links > _MAX_LINKS:
                    raise UnsafePathError(f"{self.what}: too many levels of symbolic links "
                                          f"resolving '{key}'")
                target = os.readlink(path)
                if target.startswith("/"):
                    real = []
                pending.extend(reversed(target.split("/")))
            else:
                if not create:
                    return None
                raise ImageError(f"{self.what}: cannot create '{key}/...': "
                                 f"'{'/'.join([*real, comp])}' is not a directory")
        result = self.root + "".join("/" + c for c in real)
        self._dirs[key] = result
        return result

    def _mark_parent(self, path: str) -> None:
        """Remember the parent's times before we change it, to put them back at the end."""
        parent = path.rsplit("/", 1)[0] or "/"
        if parent not in self._times:
            try:
                st = os.lstat(parent)
            except FileNotFoundError:
                return
            self._times[parent] = (st.st_atime_ns, st.st_mtime_ns)

    def _add_upper(self, path: str) -> None:
        while path != self.root and path not in self._upper:
            self._upper.add(path)
            path = path.rsplit("/", 1)[0]

    # Removal (whiteouts and replaced entries).

    def _remove(self, path: str, st: os.stat_result | None = None) -> None:
        if st is None:
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                return
        self._mark_parent(path)
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(path)  # fd-based: never follows symlinks out
            self._dirs.clear()
            prefix = path + "/"
            for p in [p for p in self._times if p == path or p.startswith(prefix)]:
                del self._times[p]
        else:
            os.unlink(path)
            if stat.S_ISLNK(st.st_mode):
                self._dirs.clear()

    def _purge_lower(self, path: str, keep_top: bool) -> None:
        """Remove `path` (or, with keep_top, its contents) except what this layer created."""
        if path not in self._upper and not keep_top:
            self._remove(path)
            return
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if not stat.S_ISDIR(st.st_mode):
            return
        with os.scandir(path) as it:
            children = [e.name for e in it]
        for name in children:
            self._purge_lower(path + "/" + name, keep_top=False)

    # Entries.

    def apply(self, e: TarEntry, reader: TarReader) -> None:
        parts = _split(e.name, self.what)
        self.entries += 1
        if not parts:
            if e.type != DIR:
                raise UnsafePathError(f"{self.what}: entry '{e.name}' would replace the root "
                                      "directory with a non-directory")
            self._metadata(self.root, e, is_dir=True)
            return
        base = parts[-1]
        if base.startswith(WHITEOUT_PREFIX):
            self._whiteout(parts)
            return
        parent = self._resolve_dir(parts[:-1], create=True)
        assert parent is not None
        path = parent + "/" + base
        self._mark_parent(path)
        t = e.type
        if t == REG:
            self._file(path, e, reader)
        elif t == DIR:
            self._dir(path, e)
        elif t == SYMLINK:
            self._replace(path, lambda: os.symlink(e.linkname, path))
            self._metadata(path, e, is_link=True)
        elif t == HARDLINK:
            self._hardlink(path, e)
        elif t in (CHR, BLK, FIFO):
            if self.skip_special:
                self.skipped.append("/".join(parts))
                return
            kind = {CHR: stat.S_IFCHR, BLK: stat.S_IFBLK, FIFO: stat.S_IFIFO}[t]
            dev = os.makedev(e.devmajor, e.devminor) if t != FIFO else 0
            self._replace(path, lambda: os.mknod(path, kind | 0o600, dev))
            self._metadata(path, e)
        else:
            raise UnsupportedError(f"{self.what}: entry '{e.name}' has tar type {t!r}, which "
                                   "bootc-py does not support")
        if self.apply_whiteouts:
            self._add_upper(path)

    def _whiteout(self, parts: list[str]) -> None:
        base = parts[-1]
        rel_dir = "/".join(parts[:-1])
        if base == OPAQUE:
            if not self.apply_whiteouts:
                self.opaque.append(rel_dir)
                return
            d = self._resolve_dir(parts[:-1], create=False)
            if d is not None:
                self._purge_lower(d, keep_top=True)
            return
        if base.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
            return  # aufs bookkeeping (.wh..wh.plnk etc.), not a whiteout
        name = base[len(WHITEOUT_PREFIX):]
        if name in ("", ".", ".."):
            raise UnsafePathError(f"{self.what}: malformed whiteout '{'/'.join(parts)}'")
        if not self.apply_whiteouts:
            self.whiteouts.append(f"{rel_dir}/{name}" if rel_dir else name)
            return
        d = self._resolve_dir(parts[:-1], create=False)
        if d is not None:
            self._purge_lower(d + "/" + name, keep_top=False)

    def _replace(self, path: str, create: Callable[[], None]) -> None:
        """Run `create()`; if something is in the way, remove it and try once more."""
        try:
            create()
        except FileExistsError:
            self._remove(path)
            create()

    def _file(self, path: str, e: TarEntry, reader: TarReader) -> None:
        try:
            fd = os.open(path, _OPEN_FLAGS, 0o600)
        except FileExistsError:
            self._remove(path)
            fd = os.open(path, _OPEN_FLAGS, 0o600)
        try:
            if e.size:
                self.written += reader.copy_to(fd, e.size)
            self._chown(fd, e)
            os.fchmod(fd, e.mode)
            for name, value in e.xattrs.items():
                self._setxattr(fd, name, value)
            mtime = e.mtime_ns
            os.utime(fd, ns=(e.atime_ns if e.atime_ns is not None else mtime, mtime))
        finally:
            os.close(fd)

    def _dir(self, path: str, e: TarEntry) -> None:
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            st = os.lstat(path)
            if not stat.S_ISDIR(st.st_mode):
                self._remove(path, st)
                os.mkdir(path, 0o700)
            else:
                self._clear_xattrs(path)
        self._metadata(path, e, is_dir=True)

    def _hardlink(self, path: str, e: TarEntry) -> None:
        tparts = _split(e.linkname, self.what)
        if not tparts:
            raise UnsafePathError(f"{self.what}: hard link '{e.name}' points at the root")
        tdir = self._resolve_dir(tparts[:-1], create=False)
        target = f"{tdir}/{tparts[-1]}" if tdir is not None else None
        try:
            tst = os.lstat(target) if target is not None else None
        except FileNotFoundError:
            tst = None
        if (target is None or tst is None) and self.link_source is not None:
            # A link to a file of a lower layer, applied on its own (the store imports layers
            # one by one): bring that file into this layer, then link to it.
            source = self.link_source("/".join(tparts))
            if source is not None:
                tdir = self._resolve_dir(tparts[:-1], create=True)
                target = f"{tdir}/{tparts[-1]}"
                os.replace(source, target)
                tst = os.lstat(target)
        if target is None or tst is None:
            raise ImageError(f"{self.what}: hard link '{e.name}' points at '{e.linkname}', "
                             "which does not exist")
        if stat.S_ISDIR(tst.st_mode):
            raise ImageError(f"{self.what}: hard link '{e.name}' points at directory "
                             f"'{e.linkname}'")
        if target == path:
            return
        self._replace(path, lambda: os.link(target, path, follow_symlinks=False))

    # Metadata.

    def _chown(self, fd_or_path: int | str, e: TarEntry) -> None:
        if self.is_root and not (e.uid or e.gid):
            return  # created by root: already 0:0
        try:
            if isinstance(fd_or_path, int):
                os.fchown(fd_or_path, e.uid, e.gid)
            else:
                os.chown(fd_or_path, e.uid, e.gid, follow_symlinks=False)
        except PermissionError:
            if self.is_root:
                raise
            # Unprivileged (tests, rootless): keep our own ids.

    def _setxattr(self, target: int | str, name: str, value: bytes) -> None:
        if name in IGNORED_XATTRS:
            return
        try:
            if isinstance(target, int):
                os.setxattr(target, name, value)
            else:
                os.setxattr(target, name, value, follow_symlinks=False)
        except OSError as exc:
            if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
                log.debug("%s: xattr %s not supported on the target filesystem", target, name)
                return
            if isinstance(target, str) and os.path.islink(target) and exc.errno == errno.EPERM:
                log.debug("%s: cannot set %s on a symlink", target, name)  # user.* on links
                return
            raise

    def _clear_xattrs(self, path: str) -> None:
        try:
            names = os.listxattr(path, follow_symlinks=False)
        except OSError:
            return
        for name in names:
            if name not in IGNORED_XATTRS:
                with contextlib.suppress(OSError):
                    os.removexattr(path, name, follow_symlinks=False)

    def _metadata(self, path: str, e: TarEntry, is_dir: bool = False,
                  is_link: bool = False) -> None:
        self._chown(path, e)
        if not is_link:
            os.chmod(path, e.mode)
        for name, value in e.xattrs.items():
            self._setxattr(path, name, value)
        times = (e.atime_ns if e.atime_ns is not None else e.mtime_ns, e.mtime_ns)
        if is_dir:
            self._times[path] = times  # after its children are in place
        else:
            os.utime(path, ns=times, follow_symlinks=False)

    def finish(self) -> None:
        for path, times in self._times.items():
            with contextlib.suppress(FileNotFoundError):
                os.utime(path, ns=times, follow_symlinks=False)


def apply_layer(blob: Path, media_type: str, dest: Path, *,
                whiteouts: WhiteoutMode = WhiteoutMode.APPLY, skip_special: bool = False,
                diff_id: str | None = None,
                progress: blog.ByteProgress | None = None,
                link_source: LinkSource | None = None) -> LayerResult:
    """Apply one layer blob (tar, tar+gzip or tar+zstd) onto `dest`.

    With WhiteoutMode.RECORD, whiteouts are reported instead of applied; skip_special leaves out
    device nodes and fifos (ostree cannot store them). `diff_id`, when given, is checked against
    the uncompressed stream. `link_source` supplies the targets of hard links into lower layers
    when a layer is applied on its own. Raises UnsafePathError for entries that try to leave
    `dest`.
    """
    if media_type not in mt.LAYERS:
        raise UnsupportedError(f"layer media type '{media_type}' is not supported")
    what = f"layer {dg.short(diff_id)}" if diff_id else f"layer {Path(blob).name[:12]}"
    dest = Path(dest)
    if not dest.is_dir():
        raise ImageError(f"{dest} is not a directory")
    applier = _Applier(dest, whiteouts, skip_special, what, link_source)
    counted = progress.update if progress is not None else (lambda n: None)
    hasher = hashlib.new(dg.split(diff_id)[0]) if diff_id else None
    with open(blob, "rb", buffering=0) as f:
        chunks = decompressed_chunks(f, sniff(blob), counted)
        if hasher is not None:
            chunks = _hashing(chunks, hasher)
        pre = Prefetch(chunks)
        try:
            reader = TarReader(iter(pre))
            for entry in reader:
                try:
                    applier.apply(entry, reader)
                except OSError as exc:
                    if exc.errno == errno.ENOSPC:
                        raise no_space(dest, entry.size or None,
                                       f"{what}: writing '{entry.name}'") from exc
                    raise ImageError(f"{what}: cannot write '{entry.name}': "
                                     f"{exc.strerror or exc}") from exc
            applier.finish()
            if hasher is not None:
                reader.drain()
        finally:
            pre.close()
    if hasher is not None and diff_id and f"{dg.split(diff_id)[0]}:{hasher.hexdigest()}" != diff_id:
        raise DigestMismatchError(f"{what}: the uncompressed layer does not match its diff_id")
    return LayerResult(tuple(applier.whiteouts), tuple(applier.opaque), tuple(applier.skipped),
                       applier.entries, applier.written)


def _hashing(chunks: Iterator[bytes], hasher: Any) -> Iterator[bytes]:
    """Pass chunks through, hashing them (runs in the prefetch thread)."""
    for chunk in chunks:
        hasher.update(chunk)
        yield chunk


def unpack(image: Image, dest: Path) -> None:
    """Flatten all layers of a pulled image into `dest` (missing or empty).

    On failure `dest` is emptied again (and removed if this created it): nothing half-written.
    """
    dest = Path(dest)
    created = not dest.exists()
    if not created:
        if not dest.is_dir():
            raise ImageError(f"{dest} exists and is not a directory")
        if any(dest.iterdir()):
            raise ImageError(f"{dest} is not empty", hint="unpack into a new directory")
    else:
        try:
            dest.mkdir(parents=True)
            os.chmod(dest, 0o755)
        except OSError as exc:  # /proc/x, a read-only filesystem, no permission
            raise ImageError(f"cannot create {dest}: {exc.strerror or exc}",
                             "unpack into a new directory on a writable filesystem") from None
    try:
        # Images rarely carry an entry for "/": start its mtime at the epoch, as umoci does,
        # so the same image always unpacks to the same tree.
        os.utime(dest, ns=(0, 0))
        with blog.step("unpack", f"Unpacking {image.ref} into {dest}"), \
                blog.progress_bytes("unpack", f"Unpacking {len(image.layers)} layers",
                                    image.size) as bar:
            for layer in image.layers:
                apply_layer(image.blob_path(layer.digest), layer.media_type, dest,
                            diff_id=layer.diff_id, progress=bar)
    except OSError as exc:  # on dest itself (a layer's own entries are ImageErrors already)
        _empty(dest, remove=created)
        raise ImageError(f"cannot write into {dest}: {exc.strerror or exc}",
                         "unpack into a new directory on a writable filesystem") from None
    except BaseException:
        _empty(dest, remove=created)
        raise


def _empty(dest: Path, remove: bool) -> None:
    if remove:
        shutil.rmtree(dest, ignore_errors=True)
        return
    for child in list(dest.iterdir()):
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                child.unlink()
