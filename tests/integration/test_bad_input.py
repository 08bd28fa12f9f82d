"""Bad input that used to end in a traceback: each is one line now, and nothing is kept that
would fill a disk for good."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path

import pytest
from synthetic import BOOTC_PY, SyntheticImages, run_cli

from bootc_py.disk.mount import Mount
from bootc_py.errors import NoSpaceError
from bootc_py.image import source
from bootc_py.image.cache import BlobCache, BlobWriter
from bootc_py.image.oci_layout import OciDir
from bootc_py.image.ref import parse_imgref
from bootc_py.image.source import PullOptions


def one_line_error(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, stderr
    return errors[0]


@pytest.fixture(params=["binary", "directory", "dev-zero"])
def bad_keys(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, str]:
    if request.param == "binary":
        keys = tmp_path / "id_ed25519.tar"
        keys.write_bytes(b"\x1f\x8b\x08\x00\xff\xfe binary \x00\x80\x81")
        return keys, "is not a text file (it holds binary data)"
    if request.param == "directory":
        return tmp_path, "is a directory"
    return Path("/dev/zero"), "is not a regular file"


@pytest.mark.parametrize("command", ["install", "build"])
def test_bad_authorized_keys_file_is_one_line(synthetic: SyntheticImages, tmp_path: Path,
                                              bad_keys: tuple[Path, str], command: str) -> None:
    keys, reason = bad_keys
    disk = tmp_path / "disk.raw"
    if command == "install":
        args = ["install", "to-disk", "--via-loopback", "--source-imgref", synthetic.ref("v1"),
                str(disk)]
    else:
        args = ["build", "--output", str(tmp_path / "out"), synthetic.ref("v1")]
    res = run_cli(*args, "--cache-dir", str(synthetic.cache),
                  "--root-ssh-authorized-keys", str(keys))
    assert res.returncode == 2
    assert one_line_error(res.stderr) == f"error: --root-ssh-authorized-keys: {keys} {reason}"
    assert not disk.exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("how", ["closed", "read-only"])
def test_progress_fd_that_cannot_be_written_is_one_line(tmp_path: Path, how: str) -> None:
    if how == "closed":
        proc = subprocess.run([str(BOOTC_PY), "--progress-fd", "9", "image", "list",
                               "--cache-dir", str(tmp_path)], capture_output=True, text=True)
    else:
        (tmp_path / "ro").write_text("")
        with open(tmp_path / "ro") as f:
            proc = subprocess.run([str(BOOTC_PY), "--progress-fd", str(f.fileno()), "image",
                                   "list", "--cache-dir", str(tmp_path)],
                                  capture_output=True, text=True, pass_fds=(f.fileno(),))
    assert proc.returncode == 2
    assert "Bad file descriptor" in one_line_error(proc.stderr)


def test_full_cache_filesystem_is_one_line_and_keeps_no_partial(synthetic: SyntheticImages,
                                                                tmp_path: Path) -> None:
    """The image's GRUB-module layer (several MiB) does not fit a 2 MiB cache filesystem."""
    cache = tmp_path / "cache"
    cache.mkdir()
    with Mount("tmpfs", cache, fstype="tmpfs", options=("size=2m",)):
        res = run_cli("image", "pull", "--cache-dir", str(cache), synthetic.ref("v1"))
        assert res.returncode != 0
        line = one_line_error(res.stderr)
        assert line.startswith(f"error: no space left on the filesystem at {cache}: the layer "
                               "sha256:"), line
        assert " needs " in line and " free" in line
        partials = list(cache.rglob("*.partial"))
        assert not partials, "a .partial that can never complete was kept"
        assert os.statvfs(cache).f_bfree > 0


def test_oci_on_a_file_says_it_is_a_file(tmp_path: Path) -> None:
    res = run_cli("image", "inspect", "--cache-dir", str(tmp_path), "oci:/etc/passwd")
    assert res.returncode != 0
    assert one_line_error(res.stderr) == (
        "error: /etc/passwd is a file, not an OCI layout directory")
    assert "hint: for an OCI archive (a tar) use oci-archive:/etc/passwd" in res.stderr


def test_oci_archive_on_a_directory_says_it_is_a_directory(tmp_path: Path) -> None:
    res = run_cli("image", "inspect", "--cache-dir", str(tmp_path), f"oci-archive:{tmp_path}")
    assert res.returncode != 0
    assert one_line_error(res.stderr) == (
        f"error: {tmp_path} is a directory, not an OCI archive")


@pytest.mark.parametrize(("name", "message"), [
    ("/etc/passwd", "not a docker-archive tar (as written by 'docker save' or 'podman save')"),
    ("/nonexistent.tar", "the file does not exist"),
])
def test_skopeo_failure_is_translated(tmp_path: Path, name: str, message: str) -> None:
    res = run_cli("image", "inspect", "--cache-dir", str(tmp_path), f"docker-archive:{name}")
    assert res.returncode != 0
    assert one_line_error(res.stderr) == f"error: docker-archive:{name}: {message}"
    assert "level=fatal" not in res.stderr


def test_missing_image_in_containers_storage_is_translated(tmp_path: Path) -> None:
    """Real skopeo against a real (empty) container storage: its level=fatal text becomes one
    line saying what is missing and where to look."""
    ref = f"containers-storage:[vfs@{tmp_path}/storage+{tmp_path}/run]localhost/nope:1"
    res = run_cli("image", "inspect", "--cache-dir", str(tmp_path / "cache"), ref)
    assert res.returncode == 1
    assert one_line_error(res.stderr) == f"error: {ref}: no such image in the container storage"
    assert "hint: list the images there with 'podman images'" in res.stderr
    assert "level=fatal" not in res.stderr


def test_status_on_a_host_bootc_py_did_not_deploy_says_so_and_exits_0() -> None:
    assert not Path("/ostree/repo").exists(), "this test needs a host that is not an install"
    res = run_cli("status")
    assert res.returncode == 0, res.stderr
    assert res.stdout == "System is not deployed via bootc-py.\n"
    res = run_cli("status", "--json")
    assert res.returncode == 0, res.stderr
    host = json.loads(res.stdout)
    assert host["kind"] == "BootcHost" and host["status"]["booted"] is None


@pytest.mark.parametrize(("where", "why"), [
    ("missing", "does not exist"),
    ("file", "is not a directory"),
    ("empty", "is not an ostree sysroot (no ostree/repo)"),
])
def test_status_sysroot_errors_name_the_path(tmp_path: Path, where: str, why: str) -> None:
    path = tmp_path / where
    if where == "file":
        path.write_text("")
    elif where == "empty":
        path.mkdir()
    res = run_cli("status", "--sysroot", str(path))
    assert res.returncode == 2
    assert one_line_error(res.stderr) == f"error: --sysroot {path} {why}"


def test_a_full_target_filesystem_is_one_line_naming_it_and_its_free_space(
        synthetic: SyntheticImages, tmp_path: Path) -> None:
    """ENOSPC while a layer is written (`image unpack` into a 1 MiB filesystem) names the
    filesystem, the file, its size and the room left, with what to do."""
    target = tmp_path / "target"
    target.mkdir()
    with Mount("tmpfs", target, fstype="tmpfs", options=("size=1m",)):
        res = run_cli("image", "unpack", "--cache-dir", str(synthetic.cache),
                      synthetic.ref("v1"), str(target / "root"))
        assert res.returncode == 1
        line = one_line_error(res.stderr)
        assert line.startswith(f"error: no space left on the filesystem at {target}: layer "
                               "sha256:"), line
        assert ": writing '" in line and line.endswith(" free"), line
        assert "hint: free some space there" in res.stderr


def test_standard_output_on_a_full_filesystem_is_one_line_naming_it(
        synthetic: SyntheticImages, tmp_path: Path) -> None:
    """A write that names no file (stdout redirected into a full filesystem) names the
    filesystem too; it used to be a bare 'no space left on device', or the interpreter's
    'Exception ignored' at exit."""
    full = tmp_path / "full"
    full.mkdir()
    with Mount("tmpfs", full, fstype="tmpfs", options=("size=64k",)):
        with open(full / "filler", "wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * 4096)
            except OSError:
                pass
        with open(full / "inspect.json", "w") as out:
            res = subprocess.run([str(BOOTC_PY), "image", "inspect", "--cache-dir",
                                  str(synthetic.cache), synthetic.ref("v1")],
                                 stdout=out, stderr=subprocess.PIPE, text=True, timeout=120)
        assert res.returncode == 1, res.stderr
        assert "Exception ignored" not in res.stderr
        assert one_line_error(res.stderr) == (
            f"error: no space left on the filesystem at {full}: writing standard output "
            f"({full}/inspect.json) 0 B free"), res.stderr


@pytest.mark.parametrize("where", ["proc", "read-only-new", "read-only-empty"])
def test_unpack_where_nothing_can_be_written_is_one_line(
        synthetic: SyntheticImages, tmp_path: Path, where: str) -> None:
    """These were tracebacks (FileNotFoundError, OSError EROFS)."""
    ro = tmp_path / "ro"
    ro.mkdir()
    with Mount("tmpfs", ro, fstype="tmpfs", options=("size=1m",)):
        (ro / "empty").mkdir()
        subprocess.run(["mount", "-o", "remount,ro", str(ro)], check=True)
        dest = {"proc": Path("/proc/bootc-py-x"), "read-only-new": ro / "new",
                "read-only-empty": ro / "empty"}[where]
        res = run_cli("image", "unpack", "--cache-dir", str(synthetic.cache),
                      synthetic.ref("v1"), str(dest))
        assert res.returncode == 1
        line = one_line_error(res.stderr)
        why = "No such file or directory" if where == "proc" else "Read-only file system"
        verb = "write into" if where == "read-only-empty" else "create"
        assert line == f"error: cannot {verb} {dest}: {why}", line
        assert "hint: unpack into a new directory on a writable filesystem" in res.stderr


def test_install_reset_checks_its_kargs_first() -> None:
    """install reset --karg went into the new stateroot's entry unchecked."""
    res = run_cli("install", "reset", "--karg", "x;halt")
    assert res.returncode == 2
    assert one_line_error(res.stderr).startswith(
        "error: kernel argument 'x;halt' from --karg: ';' is syntax on GRUB's linux line")


def test_full_cache_filesystem_drops_the_partials_of_the_downloads_it_cancelled(
        synthetic: SyntheticImages, tmp_path: Path) -> None:
    """The race CI met: while the big layer fills the cache, another layer's download has
    started (its .partial exists) and is cancelled. Here the small layer waits for the cancel,
    so it always is; its partial must go too, not only the one that hit ENOSPC."""
    opts = PullOptions(cache_dir=tmp_path / "meta")
    image = source.resolve(parse_imgref(synthetic.ref("v1")), opts)
    layers = sorted(image.layers, key=lambda x: x.size)
    assert len(layers) >= 2
    small, big = layers[0], layers[-1]
    real = source._LayoutFetcher(OciDir(synthetic.layout), "v1")
    started: list[str] = []

    class SmallWaitsForTheCancel:
        def blob(self, digest: str, writer: BlobWriter, progress: object,
                 cancel: threading.Event) -> None:
            started.append(digest)
            if digest != big.digest:
                assert cancel.wait(60), "the full cache never cancelled the other downloads"
            real.blob(digest, writer, None, cancel)

    cache = tmp_path / "cache"
    cache.mkdir()
    with Mount("tmpfs", cache, fstype="tmpfs", options=("size=2m",)):
        with pytest.raises(NoSpaceError):
            source._fetch_layers(BlobCache(cache), SmallWaitsForTheCancel(),  # type: ignore[arg-type]
                                 (small, big), PullOptions(cache_dir=cache, jobs=2), "v1")
        assert sorted(started) == sorted({small.digest, big.digest})
        assert not list(cache.rglob("*.partial"))
