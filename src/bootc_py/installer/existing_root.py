"""`install to-existing-root`: take over a machine that already runs a (non-ostree) Linux.

As bootc's: `install to-filesystem --replace=alongside` onto the running system's root.
`alongside` keeps the root filesystem and /boot as they are, creates the ostree sysroot beside
the old files (which stay readable under /sysroot on the new system) and replaces the
bootloader, so the next boot is the image. `wipe` empties the target first (never the root
this system runs from). Every refusal (already ostree, a root on LVM over several disks, too
little free space) comes before anything is written.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from bootc_py.disk import discover
from bootc_py.disk.model import human_size
from bootc_py.errors import DiskError, NoSpaceError, UsageError
from bootc_py.installer import cleanup_unit
from bootc_py.installer.deploy import InstallResult, finish, install_into
from bootc_py.installer.plan import InstallOptions, InstallPlan
from bootc_py.installer.to_filesystem import ALLOWED_IN_ROOT, ResolvedTarget, resolve_target
from bootc_py.run import run

log = logging.getLogger(__name__)

DEFAULT_ROOT = Path("/target")
PAUSE_SECONDS = 20
# Beyond the image's unpacked size: its kernel + initramfs copied to /boot, the deployment's
# /etc copy, the repository's metadata.
SPACE_MARGIN = 128 << 20
OLD_KEYS = "root/.ssh/authorized_keys"


class Replace(StrEnum):
    ALONGSIDE = "alongside"
    WIPE = "wipe"


@dataclass(frozen=True)
class ExistingRootOptions:
    install: InstallOptions
    root_path: Path = DEFAULT_ROOT
    replace: Replace = Replace.ALONGSIDE
    acknowledge_destructive: bool = False
    cleanup: bool = False


@dataclass(frozen=True)
class RootFacts:
    """The target root as found, before the image is looked at."""

    root: Path
    device: str
    running: bool  # the root this system runs from (directly, or as podman's /target)
    disks: tuple[str, ...]


@dataclass(frozen=True)
class SpaceCheck:
    filesystem: Path
    needed: int
    free: int

    @property
    def ok(self) -> bool:
        return self.free >= self.needed


@dataclass(frozen=True)
class TakeoverPlan:
    install: InstallPlan
    facts: RootFacts
    replace: Replace
    cleanup: bool
    space: SpaceCheck
    root_keys_from: str | None

    def render(self) -> str:
        lines = [
            f"Target root:  {self.facts.root} ({self.facts.device}"
            f"{', the running system' if self.facts.running else ''})",
            f"Replace:      {self.replace.value}"
            + (", old files removed on the first boot (--cleanup)" if self.cleanup else ""),
            f"Free space:   {human_size(self.space.free)} free, "
            f"{human_size(self.space.needed)} needed",
            f"Root keys:    {self.root_keys_from or 'none'}",
        ]
        return self.install.render() + "\n".join(lines) + "\n"


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def examine_root(root: Path, replace: Replace) -> RootFacts:
    """Refusals that need no image: not a mount, already ostree, LVM over several disks."""
    if not root.is_dir():
        hint = ("mount the host's root there (podman run -v /:/target ...), or name the root "
                "to take over (e.g. /)") if root == DEFAULT_ROOT else None
        raise UsageError(f"{root} does not exist or is not a directory", hint)
    root = root.resolve()
    if not os.path.ismount(root):
        raise UsageError(f"{root} is not a mount point", "give the root filesystem's mount point")
    # podman --pid=host: PID 1's root is the host's; bootc-py on the host: "/" itself.
    running = _same(root, Path("/")) or _same(root, Path("/proc/1/root"))
    for marker in ("ostree/repo", "sysroot/ostree/repo", "run/ostree-booted"):
        if (root / marker).exists():
            raise UsageError(
                f"{root} is already an ostree system (found {root / marker})",
                "update it with bootc-py upgrade/switch, or start over with "
                "bootc-py install reset")
    if running and Path("/run/ostree-booted").exists():
        raise UsageError("this system is already an ostree system (/run/ostree-booted)",
                         "update it with bootc-py upgrade/switch, or bootc-py install reset")
    if replace is Replace.WIPE and running:
        raise UsageError(f"--replace=wipe cannot empty {root}: this system runs from it",
                         "use --replace=alongside (the default)")
    device = _source_of(root)
    stack = discover.block_stack(device)
    refuse_split_root(root, stack)
    return RootFacts(root, device, running, stack.disks)


def refuse_split_root(root: Path, stack: discover.BlockStack) -> None:
    """A root on an LVM volume over several disks (bootc's #481): which disk would boot it?"""
    if stack.lvm and len(stack.disks) > 1:
        raise DiskError(
            f"the root filesystem at {root} is on the LVM logical volume {stack.lvm}, which "
            f"spans {len(stack.disks)} disks ({', '.join(stack.disks)}); bootc-py cannot "
            "install a bootloader for a root spread over several disks",
            "move the volume onto one disk (pvmove), or install with to-disk")


def _source_of(root: Path) -> str:
    """The block device mounted at `root` (the last mount there wins, as the kernel sees)."""
    source = None
    for line in discover.parse_mountinfo(Path("/proc/self/mountinfo").read_text()):
        if line.mountpoint == str(root):
            source = line.source
    if source is None:
        raise UsageError(f"{root} is not a mount point")
    return source


def check_space(root: Path, unpacked_bytes: int) -> SpaceCheck:
    """The image's tree goes into the repository on the root filesystem (deployments are hard
    links into it)."""
    usage = shutil.disk_usage(root)
    return SpaceCheck(root, unpacked_bytes + unpacked_bytes // 10 + SPACE_MARGIN, usage.free)


def old_root_keys(root: Path) -> tuple[str | None, str | None]:
    """(the old system's root authorized_keys, where they came from), if it has any."""
    path = root / OLD_KEYS
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        return None, None
    return (text, str(path)) if text.strip() else (None, None)


def warn_and_pause(plan: TakeoverPlan, *, acknowledged: bool,
                   sleep: Callable[[float], None] = time.sleep,
                   seconds: int = PAUSE_SECONDS) -> None:
    """bootc's safety pause: say what will happen, then give a moment to interrupt."""
    if acknowledged:
        return
    what = ("the bootloader will be replaced and the next boot starts the image; the old "
            "system's files stay under /sysroot" if plan.replace is Replace.ALONGSIDE
            else f"everything on {plan.facts.root} will be deleted")
    print(f"warning: installing {plan.install.source} to {plan.facts.root}: {what}"
          f"{'; with --cleanup they are deleted on its first boot' if plan.cleanup else ''}.\n"
          f"Continuing in {seconds} s; interrupt (Control-C) to cancel, or pass "
          "--acknowledge-destructive to skip this pause.", file=sys.stderr, flush=True)
    sleep(seconds)


def wipe_root(root: Path) -> None:
    """Delete everything on `root`, emptying filesystems mounted below it (not removing their
    mount points)."""
    mounts = {m.mountpoint for m in
              discover.parse_mountinfo(Path("/proc/self/mountinfo").read_text())}

    def clear(directory: Path) -> None:
        for entry in list(directory.iterdir()):
            holds_mounts = str(entry) in mounts or any(m.startswith(f"{entry}/") for m in mounts)
            if holds_mounts and entry.is_dir() and not entry.is_symlink():
                clear(entry)
            elif entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    clear(root)


@dataclass(frozen=True)
class TakeoverResult:
    plan: TakeoverPlan
    result: InstallResult | None


def plan_takeover(opts: ExistingRootOptions) -> tuple[TakeoverPlan, ResolvedTarget]:
    facts = examine_root(opts.root_path, opts.replace)
    keys_from = "--root-ssh-authorized-keys" if opts.install.root_ssh_authorized_keys else \
        old_root_keys(facts.root)[1]
    resolved = resolve_target(facts.root, opts.install)
    unpacked = resolved.prepared.summary.unpacked_bytes
    space = check_space(facts.root, unpacked)
    if opts.replace is Replace.WIPE:
        # What the wipe frees counts as free.
        used = shutil.disk_usage(facts.root).used
        space = SpaceCheck(space.filesystem, space.needed, space.free + used)
    plan = TakeoverPlan(resolved.plan, facts, opts.replace, opts.cleanup, space, keys_from)
    if not space.ok:
        raise NoSpaceError(
            f"not enough free space on {facts.root} ({facts.device}) for "
            f"{resolved.plan.source}: it needs {human_size(space.needed)} (the image unpacks "
            f"to {human_size(unpacked)}), {human_size(space.free)} is free",
            f"free at least {human_size(space.needed - space.free)} there first")
    return plan, resolved


def install_to_existing_root(opts: ExistingRootOptions, *, dry_run: bool = False,
                             sleep: Callable[[float], None] = time.sleep) -> TakeoverResult:
    plan, resolved = plan_takeover(opts)
    if dry_run:
        return TakeoverResult(plan, None)
    keys = opts.install.root_ssh_authorized_keys
    if keys is None:
        keys, _ = old_root_keys(plan.facts.root)
    warn_and_pause(plan, acknowledged=opts.acknowledge_destructive, sleep=sleep)
    target = resolved.target
    if opts.replace is Replace.WIPE:
        log.info("wiping %s", target.root)
        wipe_root(target.root)
    else:
        stray = sorted(p.name for p in target.root.iterdir() if p.name not in ALLOWED_IN_ROOT)
        log.info("installing alongside %d entries of the old system on %s", len(stray),
                 target.root)
    target.boot.mkdir(exist_ok=True)
    result = install_into(target, plan.install, resolved.prepared.image)
    if opts.cleanup:
        cleanup_unit.install(target.root, result.deployment)
    # The running root is not frozen (everything on the system writing to it would stall);
    # a sync now, and the journal is written back at the clean shutdown before the reboot.
    finish(target, plan.install, resolved.prepared.image, result, root_ssh_authorized_keys=keys,
           unmount_follows=plan.facts.running)
    if plan.facts.running:
        run(["sync"])
    return TakeoverResult(plan, result)
