"""Layer 2: bootc-py from the working tree, its systemd units, its update policy defaults, and
the guest check unit.

bootc-py goes under /usr (not /usr/local, which is /var on an installed host) and runs on
Debian's /usr/bin/python3 with Debian's python3-* libraries.
"""

from __future__ import annotations

import configparser
import datetime
import shutil
import subprocess
from pathlib import Path
from typing import Any

from fixture_image.oci import Blob, write_layer
from fixture_image.proc import say
from fixture_image.recipe import BOOTC_PY_SRC, GUEST, STAGED_MTIME

DIST_PACKAGES = "usr/lib/python3/dist-packages"
UNIT_DIR = "usr/lib/systemd/system"
UNIT_SUFFIXES = (".service", ".socket", ".timer", ".path", ".target", ".mount", ".automount",
                 ".slice", ".swap")
CHECK_UNIT = "bootc-py-fixture-check.service"
POLICY_DEFAULTS = "usr/lib/bootc-py/updates.toml"
LAUNCHER = """#!/usr/bin/python3
# bootc-py, installed in the sample image from the working tree (vm-fixtures/build-image).
import sys

from bootc_py.cli import main

sys.exit(main())
"""


def enable_links(unit: Path) -> list[tuple[str, str]]:
    """What `systemctl enable` would create for `unit`: (symlink path in the tree, target).

    Handles WantedBy=, RequiredBy=, UpheldBy= and Alias=; templates use DefaultInstance=.
    A unit without an [Install] section is static: nothing to enable.
    """
    parser = configparser.ConfigParser(strict=False, interpolation=None,
                                       empty_lines_in_values=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(unit.read_text())
    if not parser.has_section("Install"):
        return []
    install = parser["Install"]
    name = unit.name
    target = f"/{UNIT_DIR}/{name}"
    if "@." in name:
        instance = install.get("DefaultInstance", "").strip()
        if not instance:
            return []
        link_name = name.replace("@.", f"@{instance}.", 1)
    else:
        link_name = name
    links = []
    for key, suffix in (("WantedBy", "wants"), ("RequiredBy", "requires"),
                        ("UpheldBy", "upholds")):
        for dep in install.get(key, "").split():
            links.append((f"etc/systemd/system/{dep}.{suffix}/{link_name}", target))
    for alias in install.get("Alias", "").split():
        links.append((f"etc/systemd/system/{alias}", target))
    return links


def install_unit(tree: Path, unit: Path) -> list[str]:
    """Copy a unit into /usr/lib/systemd/system and enable it; returns the links made."""
    dst = tree / UNIT_DIR / unit.name
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(unit, dst)
    dst.chmod(0o644)
    made = []
    for link, target in enable_links(unit):
        path = tree / link
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        path.symlink_to(target)
        made.append(link)
    return made


def _compile(pkg: Path) -> str:
    """Precompile for the image's Python 3.11 (checked-hash .pyc: valid whatever the mtimes).

    /usr is read-only on an installed host, so without them every run compiles in memory.
    Skipped (and said) when the host has no /usr/bin/python3 3.11.
    """
    py = Path("/usr/bin/python3")
    try:
        ver = subprocess.run([str(py), "-c", "import sys; print(sys.version_info[:2])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        ver = "none"
    if ver != "(3, 11)":
        say(f"bootc-py layer: not precompiling (host /usr/bin/python3 is {ver}, image has 3.11)")
        return "none"
    res = subprocess.run([str(py), "-m", "compileall", "-q", "--invalidation-mode",
                          "checked-hash", "-d", f"/{DIST_PACKAGES}/bootc_py", str(pkg)],
                         capture_output=True, text=True, check=False)
    if res.returncode != 0:
        # A half-edited module in the working tree: the image still builds (the error shows
        # when bootc-py runs in the guest), but say so.
        errors = [ln for ln in res.stdout.splitlines() if ln.startswith("***")]
        say("bootc-py layer: warning: some modules do not compile: "
            + "; ".join(e.split("/dist-packages/")[-1].rstrip("'.") for e in errors))
        return "partial"
    return "checked-hash"


# Pure-Python packages bootc-py needs that Debian 12 does not ship: vendored from the build's
# own Python environment (pinned here, so a new version changes the layer's cache key).
VENDORED = {"pykickstart": "3.78"}


def vendor(tree: Path) -> None:
    """Copy each VENDORED package (as the build's Python has it) into dist-packages."""
    import importlib.metadata
    import importlib.util

    for name, version in VENDORED.items():
        try:
            found = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found = "none"
        if found != version:
            raise SystemExit(f"bootc-py layer: {name} {found} is installed, the layer pins "
                             f"{version}: pip install {name}=={version}")
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin is not None
        shutil.copytree(Path(spec.origin).parent, tree / DIST_PACKAGES / name, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def normalize_modes(tree: Path) -> None:
    """Directories 0755, files 0755 or 0644: nothing of the checkout's umask leaks in."""
    for p in [tree, *tree.rglob("*")]:
        if p.is_symlink():
            continue
        if p.is_dir():
            p.chmod(0o755)
        else:
            p.chmod(0o755 if p.stat().st_mode & 0o111 else 0o644)


def stage(tree: Path) -> dict[str, Any]:
    pkg = tree / DIST_PACKAGES / "bootc_py"
    shutil.copytree(BOOTC_PY_SRC, pkg, symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    pyc = _compile(pkg)
    vendor(tree)
    launcher = tree / "usr/bin/bootc-py"
    launcher.parent.mkdir(parents=True, exist_ok=True)
    launcher.write_text(LAUNCHER)
    launcher.chmod(0o755)

    enabled: list[str] = []
    units = sorted(p for p in (BOOTC_PY_SRC / "data" / "systemd").glob("*")
                   if p.is_file() and p.name.endswith(UNIT_SUFFIXES))
    for unit in units:
        enabled += install_unit(tree, unit)
    # Drop-in directories (foo.service.d/) and other files there go along as they are.
    for extra in sorted((BOOTC_PY_SRC / "data" / "systemd").glob("*.d")):
        if extra.is_dir():
            shutil.copytree(extra, tree / UNIT_DIR / extra.name)

    # The update policy's defaults, where bootc_py.update.policy reads them.
    policy = tree / POLICY_DEFAULTS
    policy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(BOOTC_PY_SRC / "data" / "updates.toml", policy)

    check = tree / "usr/lib/bootc-py-fixture/check.py"
    check.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(GUEST / "check.py", check)
    check.chmod(0o755)
    enabled += install_unit(tree, GUEST / CHECK_UNIT)
    # The manager's timeouts for a slow test machine (guest/system.conf.d).
    shutil.copytree(GUEST / "system.conf.d", tree / "usr/lib/systemd/system.conf.d")
    normalize_modes(tree)
    return {"units": [u.name for u in units] + [CHECK_UNIT], "enabled": enabled, "pyc": pyc}


def build_bootc_layer(work: Path) -> tuple[Blob, Path, str, dict[str, Any]]:
    tree = work / "tree"
    tree.mkdir()
    meta = stage(tree)
    blob = write_layer(tree, work / "layer.tar.gz", mtime=STAGED_MTIME, owner=(0, 0))
    created = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return blob, work / "layer.tar.gz", created, meta
