"""`install to-existing-root --cleanup`: on the first boot of the new system, delete the old
system's files from the physical root (/sysroot), once, with a log.

Written into the new deployment's /etc (per-machine state, so it needs nothing from the image
but a shell): a unit gated on a flag file in the physical root, and the script it runs. The
script keeps what is ostree's or bootc-py's (ostree/, boot/ and its bootloader files, the
install record) and removes the rest; the flag goes last, so an interrupted run repeats.
"""

from __future__ import annotations

from pathlib import Path

from bootc_py.store.sysroot import Deployment

UNIT = "bootc-py-destructive-cleanup.service"
FLAG = ".bootc-py-destructive-cleanup"
SCRIPT = "etc/bootc-py/destructive-cleanup.sh"
LOG = "ostree/bootc-py/destructive-cleanup.log"

# Entries of the physical root that are the new system's (everything else is the old one's).
KEEP = ("ostree", "boot", "lost+found", ".bootc-aleph.json", FLAG)
# In /boot (a directory of the root or its own filesystem): the old kernels go; the ostree
# boot files, GRUB (now the image's), the ESP mount point and bootc-py's records stay.
BOOT_REMOVE = ("vmlinuz-*", "initrd.img-*", "System.map-*", "config-*", "vmlinuz",
               "initrd.img", "vmlinuz.old", "initrd.img.old")


def render_unit() -> str:
    return f"""[Unit]
Description=Remove the previous system's files from the physical root (bootc-py --cleanup)
Documentation=man:bootc-install-to-existing-root(8)
ConditionPathExists=/sysroot/{FLAG}
RequiresMountsFor=/sysroot /boot
After=local-fs.target

[Service]
Type=oneshot
ExecStart=/bin/sh /{SCRIPT}

[Install]
WantedBy=multi-user.target
"""


def render_script() -> str:
    keep = " ".join(f"'{k}'" for k in KEEP)
    boot = " ".join(BOOT_REMOVE)
    return f"""#!/bin/sh
# Written by bootc-py install to-existing-root --cleanup: runs once, on the first boot of the
# new system, and removes what the previous system left on the physical root.
set -u
log=/sysroot/{LOG}
mkdir -p "$(dirname "$log")"
say() {{ echo "$*"; echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) $*" >> "$log"; }}
say "bootc-py destructive cleanup: start"
failed=0
cd /sysroot || exit 1
for entry in * .[!.]* ..?*; do
    [ -e "$entry" ] || [ -L "$entry" ] || continue
    case " {keep} " in *" '$entry' "*) continue ;; esac
    if mountpoint -q "/sysroot/$entry"; then say "keeping mount point /sysroot/$entry"; continue; fi
    say "removing /sysroot/$entry"
    rm -rf --one-file-system -- "/sysroot/$entry" || failed=1
done
cd /sysroot/boot || exit 1
for entry in {boot}; do
    [ -e "$entry" ] || [ -L "$entry" ] || continue
    say "removing /boot/$entry"
    rm -f -- "/sysroot/boot/$entry" || failed=1
done
if [ "$failed" -ne 0 ]; then
    say "bootc-py destructive cleanup: some entries could not be removed; retrying next boot"
    exit 1
fi
rm -f /sysroot/{FLAG}
say "bootc-py destructive cleanup: done"
"""


def install(sysroot: Path, deployment: Deployment) -> list[Path]:
    """The unit (enabled), its script and the flag; returns the files written."""
    etc = deployment.path / "etc"
    unit = etc / "systemd/system" / UNIT
    link = etc / "systemd/system/multi-user.target.wants" / UNIT
    script = deployment.path / SCRIPT
    flag = sysroot / FLAG
    for path in (unit, link, script):
        path.parent.mkdir(parents=True, exist_ok=True)
    unit.write_text(render_unit())
    unit.chmod(0o644)
    script.write_text(render_script())
    script.chmod(0o755)
    link.unlink(missing_ok=True)
    link.symlink_to(f"/etc/systemd/system/{UNIT}")
    flag.write_text("bootc-py install to-existing-root --cleanup: remove the old system's "
                    "files on the first boot\n")
    return [unit, link, script, flag]
