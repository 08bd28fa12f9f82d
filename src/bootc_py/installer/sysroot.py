"""The ostree sysroot on the target root filesystem: init, deploy, per-machine state.

Layout (compatible with bootc/ostree): /ostree/repo (bare), deployments under
/ostree/deploy/<stateroot>/deploy/<checksum>.<serial>, the shared
/ostree/deploy/<stateroot>/var, BLS entries in /boot/loader/entries.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bootc_py import __version__
from bootc_py.errors import InstallError
from bootc_py.run import run
from bootc_py.store.repo import OstreeRepo

ALEPH = ".bootc-aleph.json"


@dataclass(frozen=True)
class Deployment:
    stateroot: str
    checksum: str
    serial: int
    path: Path  # the deployment root directory on the target

    @property
    def var(self) -> Path:
        return self.path.parent.parent / "var"


@dataclass(frozen=True)
class FstabEntry:
    spec: str
    mountpoint: str
    fstype: str
    options: str = "defaults"
    passno: int = 0

    def line(self) -> str:
        return f"{self.spec} {self.mountpoint} {self.fstype} {self.options} 0 {self.passno}"


def origin_reference(imgref: str) -> str:
    """The origin's container-image-reference, spelled as ostree-ext/bootc spell it."""
    if imgref.startswith("docker://"):
        return "ostree-unverified-registry:" + imgref[len("docker://"):]
    return "ostree-unverified-image:" + imgref


def render_origin(target_imgref: str, manifest_digest: str) -> str:
    return ("[origin]\n"
            f"container-image-reference={origin_reference(target_imgref)}\n"
            "\n[bootc-py]\n"
            f"imgref={target_imgref}\n"
            f"manifest-digest={manifest_digest}\n")


def init(root: Path, stateroot: str) -> OstreeRepo:
    """`ostree admin init-fs` + `os-init`; ostree writes only BLS entries (we own the loader)."""
    run(["ostree", "admin", "init-fs", "--modern", str(root)], quiet=True)
    run(["ostree", "admin", "os-init", f"--sysroot={root}", stateroot], quiet=True)
    repo = OstreeRepo(root / "ostree/repo")
    repo.config_set("sysroot.bootloader", "none")
    return repo


def deploy(root: Path, stateroot: str, ref: str, commit: str, *, origin: str,
           kargs: Sequence[str]) -> Deployment:
    origin_file = root / "ostree" / f".bootc-py-origin-{os.getpid()}"
    origin_file.write_text(origin)
    try:
        # --karg-append keeps repeated keys (console=tty0 console=ttyS0) in order.
        # --no-prune: a fresh repository has nothing to prune, and walking it costs time.
        run(["ostree", "admin", "deploy", f"--sysroot={root}", f"--os={stateroot}",
             f"--origin-file={origin_file}", "--karg-none", "--no-prune",
             *[f"--karg-append={k}" for k in kargs], ref], quiet=True)
    finally:
        origin_file.unlink(missing_ok=True)
    deploy_dir = root / "ostree/deploy" / stateroot / "deploy"
    serials = sorted(int(p.name.rsplit(".", 1)[1]) for p in deploy_dir.glob(f"{commit}.*")
                     if p.is_dir())
    if not serials:
        raise InstallError(f"ostree deployed {ref} but no deployment of {commit[:12]} appeared")
    serial = serials[-1]
    return Deployment(stateroot, commit, serial, deploy_dir / f"{commit}.{serial}")


def write_fstab(deployment: Deployment, entries: Sequence[FstabEntry]) -> None:
    """Per-machine /etc/fstab in the deployment; later deployments inherit it by /etc merge."""
    fstab = deployment.path / "etc/fstab"
    lines = ["# Written by bootc-py at install time. / is mounted by ostree-prepare-root."]
    lines += [e.line() for e in entries]
    if fstab.is_symlink() or fstab.exists():
        fstab.unlink()  # never write through a hardlink into the repository
    fstab.write_text("\n".join(lines) + "\n")
    fstab.chmod(0o644)


def seed_var(deployment: Deployment) -> None:
    """Copy the image's /var into the stateroot's /var: done once, at first install only.

    ostree 2022.7 does not do this (FACTS §2); later updates bring /var content via tmpfiles.d.
    """
    src = deployment.path / "var"
    dest = deployment.var
    if not src.is_dir():
        return
    # cp -a keeps owners, modes, xattrs, hard links; --no-clobber leaves os-init's dirs alone.
    run(["cp", "-a", "--no-clobber", "--no-target-directory", str(src), str(dest)])


def install_root_ssh_keys(deployment: Deployment, keys: str) -> Path:
    """Root's authorized_keys, in /var/roothome (the target of /root)."""
    ssh = deployment.var / "roothome" / ".ssh"
    ssh.mkdir(parents=True, exist_ok=True)
    ssh.parent.chmod(0o700)
    ssh.chmod(0o700)
    path = ssh / "authorized_keys"
    path.write_text(keys if keys.endswith("\n") else keys + "\n")
    path.chmod(0o600)
    for p in (ssh.parent, ssh, path):
        os.chown(p, 0, 0)
    return path


def write_aleph(root: Path, *, image: str, target: str, digest: str, kernel: str,
                stateroot: str, extra: dict[str, object] | None = None) -> Path:
    """A record of the install in the sysroot, like bootc's .bootc-aleph.json."""
    data: dict[str, object] = {
        "image": image, "target-image": target, "digest": digest, "kernel": kernel,
        "stateroot": stateroot, "selinux": "disabled",
        "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "bootc-py": __version__,
    }
    data.update(extra or {})
    path = root / ALEPH
    path.write_text(json.dumps(data, indent=2) + "\n")
    path.chmod(0o444)
    return path
