"""Crafted layers covering every flatten case, shared by unit and integration tests.

`feature_layers()` is a 3-layer image exercising whiteouts, opaque dirs, hard links (within and
across layers), symlinks, devices, fifos, ownership, special modes, xattrs (security.capability
too), mtimes (sub-second), long and non-UTF-8 names, and type changes. `TRAVERSAL` maps a case
name to layers that try to reach outside the target directory.
"""

from __future__ import annotations

import os

from oci_builder import LayerBuilder

# A v2 file capability: cap_net_raw+ep (bit 13).
CAP_NET_RAW = bytes.fromhex("0100000200200000000000000000000000000000")
T0 = 1_600_000_000
BIG = os.urandom(1 << 20) + b"tail"


def feature_layers() -> list[LayerBuilder]:
    l1 = (
        LayerBuilder()
        .dir("etc", mtime=T0)
        .file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n", mtime=T0 + 1)
        .file("etc/empty", b"")
        .dir("usr", mtime=T0).dir("usr/bin", mtime=T0 + 2).dir("usr/lib", mtime=T0 + 3)
        .file("usr/bin/ping", b"\x7fELF" * 64, mode=0o4755,
              xattrs={"security.capability": CAP_NET_RAW})
        .file("usr/bin/wall", b"wall", mode=0o2755, gid=5)
        .file("usr/bin/tool", b"tool v1", uid=1000, gid=1000, mode=0o750, mtime=T0 + 0.25)
        .hardlink("usr/bin/tool-link", "usr/bin/tool")
        .symlink("usr/bin/tool-sym", "tool")
        .hardlink("usr/bin/sym-hardlink", "usr/bin/tool-sym")
        .file("usr/lib/big.bin", BIG, mode=0o644)
        .file("usr/lib/biguid", b"x", uid=3_000_000, gid=3_000_001)
        .symlink("lib", "usr/lib")
        .symlink("abs-link", "/usr/bin/ping")
        .symlink("dangling", "does/not/exist")
        .symlink("usr/lib/" + "l" * 150, "t" * 150)
        .dir("tmp", mode=0o1777)
        .dir("srv", mode=0o2775, uid=33, gid=33)
        .dir("dev")
        .chardev("dev/null", 1, 3)
        .blockdev("dev/loop7", 7, 7)
        .fifo("dev/initctl", mode=0o600)
        .dir("deep").dir("deep/" + "d" * 120).file("deep/" + "d" * 120 + "/" + "f" * 120, b"long")
        .dir("intl").file("intl/café-naïve.txt", b"utf8")
        .file("intl/latin1-\udce9", b"not utf-8")
        .file("xattrs", b"x", xattrs={"user.bin": b"\x00\xff\x10binary", "trusted.t": b"1"})
        .dir("gone").file("gone/a", b"a").dir("gone/sub").file("gone/sub/b", b"b")
        .file("gone-file", b"bye")
        .dir("opq", mtime=T0).file("opq/old", b"old").dir("opq/olddir").file("opq/olddir/x", b"x")
        .dir("opq2").file("opq2/old", b"old")
        .file("becomes-dir", b"f").dir("becomes-file").file("becomes-file/child", b"c")
        .symlink("sym-becomes-file", "etc").file("file-becomes-sym", b"f")
        .dir("meta", mode=0o700, xattrs={"user.old": b"1"})
    )
    l2 = (
        LayerBuilder()
        .whiteout("gone").whiteout("gone-file").whiteout("never-existed")
        .dir("opq", mtime=T0 + 100).opaque("opq").file("opq/new", b"new")
        .file("opq2/kept-before-marker", b"k").opaque("opq2")
        .hardlink("etc/passwd-link", "etc/passwd")  # to a file from layer 1
        .file("lib/through-symlink", b"lands in usr/lib")  # parent is a symlink
        .file("usr/bin/tool", b"tool v2 replaced", mode=0o755)
        .dir("becomes-dir", mode=0o711).file("becomes-file", b"now a file")
        .file("sym-becomes-file", b"was a symlink").symlink("file-becomes-sym", "/etc/passwd")
        .dir("meta", mode=0o755, uid=7, gid=8, xattrs={"user.new": b"2"})
        .file(".wh..wh.plnk", b"")  # aufs hard-link bookkeeping: ignored
    )
    l3 = (
        LayerBuilder()
        .whiteout("usr/bin/tool-link")
        .dir("gone", mtime=T0 + 7)
        .file("gone/reborn", b"a path whited out, then created again")
        .dir("etc", mtime=T0 + 5)
        .file("etc/hostname", b"image\n")
    )
    return [l1, l2, l3]


def _sym_escape() -> list[LayerBuilder]:
    return [LayerBuilder().symlink("up", "../../../../../../outside-target")
            .file("up/pwned", b"x")]


TRAVERSAL: dict[str, list[LayerBuilder]] = {
    # Refused outright (UnsafePathError), nothing written outside.
    "dotdot-name": [LayerBuilder().dir("ok").file("../escaped", b"x")],
    "dotdot-inner": [LayerBuilder().file("a/../../escaped", b"x")],
    "dotdot-hardlink": [LayerBuilder().hardlink("stolen", "../../../etc/hostname")],
    "root-as-symlink": [LayerBuilder().symlink(".", "/")],
    # Contained: followed inside the target as if it were /, never out of it.
    "absolute-name": [LayerBuilder().file("/abs-file", b"x")],
    "symlink-absolute": [LayerBuilder().symlink("evil", "/").dir("evil/etc")
                         .file("evil/etc/pwned", b"x")],
    "symlink-relative": _sym_escape(),
    "symlink-earlier-layer": [LayerBuilder().symlink("lnk", "/outside"),
                              LayerBuilder().file("lnk/pwned", b"x")],
    "whiteout-through-symlink": [LayerBuilder().dir("victim").file("victim/keep", b"k")
                                 .symlink("wh", "../../victim"),
                                 LayerBuilder().whiteout("wh/keep")],
    "hardlink-through-symlink": [LayerBuilder().symlink("hl", "/etc")
                                 .dir("etc").file("etc/inside", b"i")
                                 .hardlink("linked", "hl/inside")],
}

REFUSED = {"dotdot-name", "dotdot-inner", "dotdot-hardlink", "root-as-symlink"}
