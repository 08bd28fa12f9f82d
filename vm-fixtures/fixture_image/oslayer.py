"""Layer 1: the OS: mmdebstrap (minbase, merged /usr, lean dpkg filters) + os-customize.sh."""

from __future__ import annotations

import datetime
import os
import shutil
import time
from pathlib import Path
from typing import Any

from fixture_image.cache import mounts_under
from fixture_image.errors import FixtureError
from fixture_image.oci import Blob, write_layer
from fixture_image.proc import run, say, step
from fixture_image.recipe import RECIPE, SUITE, read_list

MERGED_USR_HOOK = Path("/usr/share/mmdebstrap/hooks/merged-usr")


def mmdebstrap_argv(rootfs: Path) -> list[str]:
    """The mmdebstrap command line. No mirror argument: the machine's apt sources are used."""
    packages = read_list(RECIPE / "os-packages.txt")
    argv = [
        "mmdebstrap", "--variant=minbase", "--mode=root", f"--hook-dir={MERGED_USR_HOOK}",
        "--aptopt=APT::Install-Recommends \"false\"",
        *(f"--dpkgopt={opt}" for opt in read_list(RECIPE / "dpkg-excludes.txt")),
        f"--include={','.join(packages)}",
        f"--customize-hook=upload {RECIPE / 'os-customize.sh'} /tmp/os-customize.sh",
        '--customize-hook=chroot "$1" /bin/sh /tmp/os-customize.sh',
        '--customize-hook=rm -f "$1/tmp/os-customize.sh"',
        SUITE, str(rootfs),
    ]
    return argv


def _empty_dir(path: Path, mode: int) -> None:
    if mounts_under(path):
        raise FixtureError(f"{path} is still mounted; refusing to empty it")
    shutil.rmtree(path)
    path.mkdir()
    path.chmod(mode)


def finish_tree(rootfs: Path) -> dict[str, Any]:
    """Host-side cleanup of the rootfs and the facts recorded with the layer."""
    if mounts_under(rootfs):
        raise FixtureError(f"mmdebstrap left mounts under {rootfs}: {mounts_under(rootfs)}")
    # mmdebstrap's /dev holds device nodes (ostree refuses them) and /run, /tmp are runtime.
    _empty_dir(rootfs / "dev", 0o755)
    _empty_dir(rootfs / "run", 0o755)
    _empty_dir(rootfs / "tmp", 0o1777)
    kvers = sorted(os.listdir(rootfs / "usr/lib/modules"))
    if len(kvers) != 1:
        raise FixtureError(f"expected exactly one kernel in the image, found {kvers}")
    kdir = rootfs / "usr/lib/modules" / kvers[0]
    for name in ("vmlinuz", "initramfs.img"):
        if not (kdir / name).is_file():
            raise FixtureError(f"the image lacks /usr/lib/modules/{kvers[0]}/{name}")
    if any((rootfs / "boot").iterdir()):
        raise FixtureError("/boot is not empty in the image")
    packages = sorted(
        line.split("\t")[0] + "=" + line.split("\t")[1]
        for line in run(["dpkg-query", f"--admindir={rootfs}/var/lib/dpkg", "-W",
                         "-f=${Package}\t${Version}\n"]).splitlines() if line)
    size = sum(
        (Path(dp) / f).lstat().st_size
        for dp, _, files in os.walk(rootfs) for f in files)
    return {"kver": kvers[0], "packages": packages, "tree_bytes": size}


def build_os_layer(work: Path) -> tuple[Blob, Path, str, dict[str, Any]]:
    rootfs = work / "rootfs"
    log = work / "mmdebstrap.log"
    created = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    t0 = time.monotonic()
    with step("os layer: mmdebstrap + dracut (about 2 minutes)"):
        try:
            run(mmdebstrap_argv(rootfs), log=log)
        finally:
            busy = mounts_under(work)
            if busy:
                say(f"warning: mmdebstrap left mounts: {busy}")
    meta = finish_tree(rootfs)
    say(f"os layer: kernel {meta['kver']}, {len(meta['packages'])} packages, "
        f"{meta['tree_bytes'] / 1e6:.0f} MB")
    with step("os layer: writing the layer tarball (gzip)"):
        blob = write_layer(rootfs, work / "layer.tar.gz")
    meta["build_seconds"] = round(time.monotonic() - t0, 1)
    return blob, work / "layer.tar.gz", created, meta
