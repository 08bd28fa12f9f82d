"""run(), the one subprocess boundary: nothing can hang it, nothing waits on a terminal, and
parsed output is in the C locale."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bootc_py.disk import loop, mount
from bootc_py.disk.mount import Mount
from bootc_py.errors import CommandError, CommandNoSpaceError, TimeoutExpired
from bootc_py.installer import live, to_filesystem
from bootc_py.run import output, run


def test_a_hung_program_is_stopped_at_its_timeout() -> None:
    start = time.monotonic()
    with pytest.raises(TimeoutExpired) as err:
        run(["sleep", "30"], timeout=0.5)
    assert time.monotonic() - start < 5
    assert err.value.message.startswith("sleep did not finish within 0.5 s and was stopped")


@pytest.mark.parametrize("program", ["losetup", "mount", "lsblk", "findmnt"])
def test_a_hung_device_call_is_stopped_at_the_device_timeout(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, program: str) -> None:
    """losetup, mount, lsblk and findmnt had the hour every program gets: a stuck device (a
    dead NBD or iSCSI disk, a hung USB stick) held an install for an hour. They get their own,
    shorter limits."""
    stubs = tmp_path / "bin"
    stubs.mkdir()
    (stubs / program).write_text("#!/bin/sh\nexec sleep 600\n")  # a call that never returns
    (stubs / program).chmod(0o755)
    monkeypatch.setenv("PATH", f"{stubs}:{os.environ['PATH']}")
    image = tmp_path / "disk.raw"
    image.write_bytes(b"\0" * 4096)
    start = time.monotonic()
    with pytest.raises(TimeoutExpired) as err:
        if program == "losetup":
            monkeypatch.setattr(loop, "DEVICE_TIMEOUT", 0.5)
            loop.LoopDevice(image).attach()
        elif program == "mount":
            monkeypatch.setattr(mount, "MOUNT_TIMEOUT", 0.5)
            mount.Mount(image, tmp_path / "mnt", "xfs").mount()
        elif program == "lsblk":  # the live installer listing the disks
            monkeypatch.setattr(live, "DEVICE_TIMEOUT", 0.5)
            live.choose_disk(None, live.Medium(tmp_path, {}, None))
        else:  # install to-filesystem reading what is mounted at the target
            monkeypatch.setattr(to_filesystem, "DEVICE_TIMEOUT", 0.5)
            to_filesystem.mount_of(tmp_path)
    assert time.monotonic() - start < 5
    assert err.value.message.startswith(f"{program} did not finish within 0.5 s")


def test_stdin_is_dev_null() -> None:
    # `cat` with an inherited stdin would wait for input (under systemd: forever).
    assert output(["cat"], timeout=10) == ""


def test_captured_output_is_in_the_c_locale() -> None:
    assert output(["sh", "-c", "echo $LC_ALL"], env={"LANG": "de_DE.UTF-8"}) == "C"


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(a 4 MiB tmpfs, 8 MiB of incompressible data outside it)."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "random").write_bytes(os.urandom(8 << 20))
    full = tmp_path / "small"
    full.mkdir()
    with Mount("tmpfs", full, fstype="tmpfs", options=("size=4m",)):
        yield full, data


def _assert_names(err: CommandNoSpaceError, fs: Path, program: str) -> None:
    assert isinstance(err, CommandError)  # callers handling a failed program still do
    assert err.message.startswith(f"no space left on the filesystem at {fs}: {program} "
                                  "failed writing "), err.message
    assert err.message.endswith(" free"), err.message
    assert err.hint is not None and err.hint.startswith("free some space there")


@pytest.mark.parametrize("program", ["qemu-img", "mksquashfs"])
def test_enospc_from_a_program_names_the_filesystem_it_writes(
        small_fs: tuple[Path, Path], program: str) -> None:
    """These were "'qemu-img convert -f ...' failed (exit 1): ...: No space left on device"."""
    full, data = small_fs
    out = full / "out"
    if program == "qemu-img":
        argv = ["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(data / "random"),
                str(out)]
        needs: int | None = 8 << 20
    else:
        argv = ["mksquashfs", str(data), str(out), "-noappend", "-quiet", "-no-progress"]
        needs = None
    with pytest.raises(CommandNoSpaceError) as err:
        run(argv, writes=out, needs=needs, quiet=True)
    _assert_names(err.value, full, program)
    assert f"{program} failed writing {out}" in err.value.message
    if needs:
        assert " needs 8 MiB, " in err.value.message


@pytest.mark.parametrize("reserve", ["ostree's reserve", "none"])
def test_enospc_without_writes_names_the_fullest_filesystem_among_the_arguments(
        small_fs: tuple[Path, Path], reserve: str) -> None:
    """ostree is given --repo=PATH: the repository's filesystem is the one that filled. By
    default ostree refuses before ENOSPC (min-free-space-percent): the same error."""
    full, data = small_fs
    repo = full / "repo"
    run(["ostree", "init", f"--repo={repo}", "--mode=bare"])
    if reserve == "none":
        run(["ostree", f"--repo={repo}", "config", "set", "core.min-free-space-percent", "0"])
    with pytest.raises(CommandNoSpaceError) as err:
        run(["ostree", f"--repo={repo}", "commit", "--branch=x", f"--tree=dir={data}"],
            quiet=True)
    _assert_names(err.value, full, "ostree")
    assert f"ostree failed writing to {repo} " in err.value.message


def test_enospc_from_a_removed_directory_naming_no_path_is_still_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing to tell which filesystem filled (no path argument, and the cwd was removed):
    this was a FileNotFoundError traceback from Path.cwd()."""
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    with pytest.raises(CommandNoSpaceError) as err:
        run(["sh", "-c", "echo 'write: No space left on device' >&2; exit 1"])
    assert err.value.message == ("no space left on device: sh failed, and names no path to "
                                 "tell where")


def test_other_failures_stay_command_errors(tmp_path: Path) -> None:
    with pytest.raises(CommandError) as err:
        run(["sh", "-c", "echo broken >&2; exit 3"])
    assert not isinstance(err.value, CommandNoSpaceError)
    assert err.value.message == "'sh -c echo broken >&2; exit 3' failed (exit 3): broken"
