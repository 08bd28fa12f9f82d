"""What ostree 2022.7's CLI cannot do, through libostree (PyGObject): list deployments with
their flags, and write a new deployment order (set the default, roll back, drop a staged one).

A standalone script, run by store/sysroot.py through run() with a python that has `gi`
(Debian's python3 with python3-gi + gir1.2-ostree-1.0): the test venv has no `gi`, the booted
host runs bootc-py on that very python, so one code path serves both. It imports nothing from
bootc_py and prints one JSON document on stdout.

    libostree_helper.py list SYSROOT
    libostree_helper.py write-order SYSROOT CSUM.SERIAL...   (listed order; the rest removed)
    libostree_helper.py pin SYSROOT CSUM.SERIAL true|false
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import gi

gi.require_version("OSTree", "1.0")
from gi.repository import Gio, OSTree  # noqa: E402


def _load(path: str) -> Any:
    sysroot = OSTree.Sysroot.new(Gio.File.new_for_path(path))
    sysroot.load(None)
    return sysroot


def _key(dep: Any) -> str:
    return f"{dep.get_csum()}.{dep.get_deployserial()}"


def _string_metadata(repo: Any, checksum: str) -> dict[str, str] | None:
    """A commit's metadata entries that are strings; None if the commit is missing."""
    ok, commit = repo.load_variant_if_exists(OSTree.ObjectType.COMMIT, checksum)
    if not ok or commit is None:
        return None
    meta = commit.get_child_value(0)
    out = {}
    for i in range(meta.n_children()):
        entry = meta.get_child_value(i)
        value = entry.get_child_value(1).get_variant()
        if value.get_type_string() == "s":
            out[entry.get_child_value(0).get_string()] = value.get_string()
    return out


def _describe(sysroot: Any) -> dict[str, Any]:
    booted = sysroot.get_booted_deployment()
    repo = sysroot.repo()
    commits: dict[str, Any] = {}
    deps = []
    for index, dep in enumerate(sysroot.get_deployments()):
        origin = dep.get_origin()  # a staged deployment's lives in /run until finalized
        deps.append({
            "origin": origin.to_data()[0] if origin is not None else None,
            "index": index, "stateroot": dep.get_osname(), "checksum": dep.get_csum(),
            "serial": dep.get_deployserial(), "staged": bool(dep.is_staged()),
            "pinned": bool(dep.is_pinned()),
            "booted": booted is not None and bool(dep.equal(booted)),
            "unlocked": OSTree.Deployment.unlocked_state_to_string(dep.get_unlocked()),
        })
        if dep.get_csum() not in commits:
            commits[dep.get_csum()] = _string_metadata(repo, dep.get_csum())
    return {"booted": booted is not None, "deployments": deps, "commits": commits}


def _find(sysroot: Any, key: str) -> Any:
    for dep in sysroot.get_deployments():
        if _key(dep) == key:
            return dep
    raise SystemExit(f"no deployment {key}")


def main(argv: list[str]) -> int:
    verb, path, args = argv[0], argv[1], argv[2:]
    # libostree prints progress to stdout ("Bootloader updated; ..."): send fd 1 to stderr
    # and keep the real stdout for the one JSON answer.
    answer = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sysroot = _load(path)
    if verb == "write-order":
        # A staged deployment left out of the list is dropped by libostree
        # (it removes /run/ostree/staged-deployment).
        wanted = [_find(sysroot, key) for key in args]
        sysroot.write_deployments(wanted, None)
        sysroot = _load(path)
    elif verb == "pin":
        sysroot.deployment_set_pinned(_find(sysroot, args[0]), args[1] == "true")
        sysroot = _load(path)
    elif verb != "list":
        raise SystemExit(f"unknown verb {verb}")
    json.dump(_describe(sysroot), answer)
    answer.write("\n")
    answer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
