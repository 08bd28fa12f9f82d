"""`bootc-py kickstart validate` and `install kickstart --dry-run`: what a user sees."""

from __future__ import annotations

import http.server
import io
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bootc_py.cli import main

DATA = Path(__file__).parent / "data" / "kickstart"
GOOD = "bootc --source-imgref registry:localhost:5000/os:1\nreqpart --add-boot\npart / --grow\n"


def cli(*args: str) -> int:
    with pytest.raises(SystemExit) as info:
        main(list(args))
        raise SystemExit(0)
    return int(info.value.code or 0)


def test_validate_prints_the_plan(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    ks = tmp_path / "ks.cfg"
    ks.write_text(GOOD + "user --name core --groups wheel\n")
    assert cli("kickstart", "validate", str(ks)) == 0
    out = capsys.readouterr().out
    assert "Image:        registry:localhost:5000/os:1" in out
    assert "user core: groups wheel" in out


def test_validate_lists_every_problem_with_its_line(capsys: pytest.CaptureFixture[str],
                                                    tmp_path: Path) -> None:
    ks = tmp_path / "ks.cfg"
    ks.write_text(GOOD + "".join(f"repo --name r{i} --baseurl http://127.0.0.1/x\n"
                                 for i in range(10)) + "%packages\nvim\n%end\n")
    before = sorted(tmp_path.iterdir())
    assert cli("kickstart", "validate", str(ks)) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == (f"{ks}:14: %packages is not supported with a bootable container "
                       "image: install packages in the Containerfile")
    assert len(err) == 11 and err[0].startswith(f"{ks}:4: repo is not supported")
    assert sorted(tmp_path.iterdir()) == before  # nothing written


@pytest.mark.parametrize("verb", [("kickstart", "validate"), ("install", "kickstart",
                                                               "--dry-run")])
def test_bootloader_append_kargs_are_checked_like_karg(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, verb: tuple[str, ...]) -> None:
    """A second root= or an ro in `bootloader --append` would contradict the installer's own
    root=UUID= rw: validate and --dry-run say so (with the line), as the install would."""
    ks = tmp_path / "ks.cfg"
    ks.write_text(GOOD + 'bootloader --append="console=ttyS0 root=/dev/sda1 ro"\n')
    disk = tmp_path / "disk.raw"
    args = [*verb, str(ks)] if verb[0] == "kickstart" else \
        [*verb, "--via-loopback", str(disk), "--disk-size", "8G", str(ks)]
    assert cli(*args) == 1
    err = capsys.readouterr().err.splitlines()
    assert sorted(err) == [
        f"{ks}:4: bootloader --append: kernel argument 'ro': the installer mounts the root "
        "read-write ('rw'; /usr stays read-only)",
        f"{ks}:4: bootloader --append: kernel argument 'root=/dev/sda1': the installer sets "
        "root=UUID=<root> itself; a second root= is not allowed"]
    assert not disk.exists()


def test_validate_reads_stdin(capsys: pytest.CaptureFixture[str],
                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(GOOD + "frobnicate\n"))
    assert cli("kickstart", "validate", "-") == 1
    assert capsys.readouterr().err == "<stdin>:4: Unknown command: frobnicate\n"


# What the test server on 127.0.0.1 serves: a kickstart whose disk part is a relative
# %include (resolved against the kickstart's URL), which includes a user by absolute URL.
SERVED = {
    "/ks.cfg": GOOD,
    "/nested/ks.cfg": "bootc --source-imgref registry:localhost:5000/os:1\n%include disk.ks\n",
    "/nested/disk.ks": "reqpart --add-boot\npart / --grow\n%include {base}/users/core.ks\n",
    "/users/core.ks": "user --name core --groups wheel\n",
}


@pytest.fixture()
def http_ks() -> Iterator[str]:
    base: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            text = SERVED.get(self.path)
            body = text.format(base=base[0]).encode() if text is not None else b""
            self.send_response(200 if body else 404)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    base.append(f"http://127.0.0.1:{server.server_port}")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield base[0]
    server.shutdown()


def test_validate_fetches_http(capsys: pytest.CaptureFixture[str], http_ks: str) -> None:
    assert cli("kickstart", "validate", f"{http_ks}/ks.cfg") == 0
    assert f"Kickstart:    {http_ks}/ks.cfg" in capsys.readouterr().out
    assert cli("kickstart", "validate", f"{http_ks}/missing.cfg") == 2
    assert "error: cannot fetch the kickstart" in capsys.readouterr().err


def test_http_kickstart_includes_relative_to_its_url_and_by_url(
        capsys: pytest.CaptureFixture[str], http_ks: str) -> None:
    assert cli("kickstart", "validate", f"{http_ks}/nested/ks.cfg") == 0
    out = capsys.readouterr().out
    assert "user core: groups wheel" in out and "part /          fs" in out


def test_local_kickstart_includes_a_url_and_a_missing_include_names_itself(
        capsys: pytest.CaptureFixture[str], http_ks: str, tmp_path: Path) -> None:
    ks = tmp_path / "ks.cfg"
    ks.write_text(GOOD + f"%include {http_ks}/users/core.ks\n")
    assert cli("kickstart", "validate", str(ks)) == 0
    assert "user core: groups wheel" in capsys.readouterr().out
    ks.write_text(GOOD + f"%include {http_ks}/users/gone.ks\n")
    assert cli("kickstart", "validate", str(ks)) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"{http_ks}/users/gone.ks:0: cannot read %include {http_ks}/users/"
                          "gone.ks: cannot fetch the kickstart") and "404" in err


def test_missing_file_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("kickstart", "validate", "/nonexistent/ks.cfg") == 2
    assert capsys.readouterr().err.startswith("error: kickstart /nonexistent/ks.cfg does not")


def test_install_dry_run_plans_the_layout_and_writes_nothing(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    disk = tmp_path / "disk.raw"
    assert cli("install", "kickstart", "--dry-run", "--via-loopback", str(disk),
               "--disk-size", "10G", str(DATA / "lvm-custom.ks")) == 0
    out = capsys.readouterr().out
    assert "Partition table: GPT on 10 GiB" in out
    assert "Volume group vg_system:" in out and "/dev/vg_system/root  2 GiB  xfs" in out
    assert "rd.lvm.lv=vg_system/root" in out and "%post (" in out
    assert not disk.exists()


def test_install_without_a_disk_says_how_to_name_one(capsys: pytest.CaptureFixture[str],
                                                     tmp_path: Path) -> None:
    ks = tmp_path / "ks.cfg"
    ks.write_text(GOOD)
    assert cli("install", "kickstart", str(ks)) == 2
    err = capsys.readouterr().err
    assert "error: the kickstart names no disk" in err and "--via-loopback" in err


def test_device_mapper_is_read_from_proc_misc(tmp_path: Path) -> None:
    from bootc_py.disk.volumes import device_mapper_available

    misc = tmp_path / "misc"
    misc.write_text(" 62 vhost-vsock\n236 device-mapper\n")
    assert device_mapper_available(misc)
    misc.write_text(" 62 vhost-vsock\n183 hw_random\n")
    assert not device_mapper_available(misc)
    assert not device_mapper_available(tmp_path / "absent")


def test_build_kickstart_refuses_options_the_kickstart_owns(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    ks = tmp_path / "ks.cfg"
    ks.write_text(GOOD)
    out = tmp_path / "out"
    assert cli("build", "--type", "raw", "--output", str(out), "--rootfs", "ext4",
               "--kickstart", str(ks), "oci:/nonexistent:1") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --rootfs, --root-ssh-authorized-keys and --bootloader do "
                          "not go with --kickstart") and "part / --fstype" in err
    assert not out.exists()
