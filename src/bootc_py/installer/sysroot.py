"""Per-machine state an install writes into a new deployment: fstab, the seeded /var, root's
keys, the install record. The sysroot and its deployments themselves are store/sysroot.py's.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bootc_py import __version__
from bootc_py.run import run
from bootc_py.store.sysroot import Deployment

ALEPH = ".bootc-aleph.json"


@dataclass(frozen=True)
class FstabEntry:
    spec: str
    mountpoint: str
    fstype: str
    options: str = "defaults"
    passno: int = 0

    def line(self) -> str:
        return f"{self.spec} {self.mountpoint} {self.fstype} {self.options} 0 {self.passno}"


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


def record_bootloaders(root: Path, names: Sequence[str]) -> None:
    """Update the install record's bootloaders (after `install bootloader`)."""
    path = root / ALEPH
    data = json.loads(path.read_text()) if path.is_file() else {}
    data["bootloaders"] = list(names)
    path.unlink(missing_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    path.chmod(0o444)
