"""`bootc-py image ...` as a user sees it (OCI layouts; registry runs are in integration)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bootc_py.cli import main
from oci_builder import LayerBuilder, OciLayout


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> OciLayout:
    monkeypatch.setenv("BOOTC_PY_CACHE_DIR", str(tmp_path / "cache"))
    lay = OciLayout(tmp_path / "oci")
    lay.add_image("v1", [LayerBuilder().dir("etc").file("etc/hostname", b"box\n").blob()],
                  labels={"containers.bootc": "1"})
    return lay


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        main(list(argv))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_pull_inspect_unpack_list_prune(env: OciLayout, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    ref = f"oci:{env.path}:v1"
    code, out, err = _run(capsys, "image", "pull", ref)
    digest = env.index["manifests"][0]["digest"]
    assert (code, out.strip()) == (0, digest)
    assert "Pulling" in err
    code, out, _ = _run(capsys, "image", "inspect", ref)
    doc = json.loads(out)
    assert code == 0 and doc["digest"] == digest and doc["labels"] == {"containers.bootc": "1"}
    assert doc["name"] == ref and len(doc["layers"]) == 1 and doc["layers"][0]["size"] > 0
    assert json.loads(_run(capsys, "image", "inspect", "--raw", ref)[1])["schemaVersion"] == 2
    assert json.loads(_run(capsys, "image", "inspect", "--config", ref)[1])["os"] == "linux"
    code, out, err = _run(capsys, "image", "unpack", ref, str(tmp_path / "root"))
    assert code == 0 and (tmp_path / "root/etc/hostname").read_text() == "box\n"
    code, out, _ = _run(capsys, "image", "list")
    assert code == 0 and out.splitlines()[0].split() == ["REFERENCE", "DIGEST", "SIZE",
                                                         "PULLED"]
    assert ref in out and digest[:19] in out
    assert json.loads(_run(capsys, "image", "list", "--json")[1])[0]["ref"] == ref
    code, out, _ = _run(capsys, "image", "prune")
    assert (code, out.strip()) == (0, "removed 0 blobs, freed 0 B")
    code, out, _ = _run(capsys, "image", "prune", "--all")
    assert code == 0 and out.startswith("removed 3 blobs") and "forgot 1 images" in out
    code, out, err = _run(capsys, "image", "list")
    assert code == 0 and "no images in" in err


@pytest.mark.parametrize(("argv", "code", "message"), [
    (["image", "pull", "Not A Ref"], 2, "error: invalid image reference 'Not A Ref'"),
    (["image", "pull", "x", "--tls-verify=maybe"], 2,
     "error: --tls-verify expects true or false, not 'maybe'"),
    (["image", "pull", "x", "--jobs", "0"], 2, "error: --jobs must be at least 1"),
    (["image", "inspect", "--raw", "--config", "x"], 2, "error: --raw and --config are"),
    (["image", "pull", "oci:/nonexistent/layout"], 1,
     "error: OCI layout directory /nonexistent/layout does not exist"),
])
def test_errors_are_one_line(env: OciLayout, capsys: pytest.CaptureFixture[str],
                             argv: list[str], code: int, message: str) -> None:
    got, out, err = _run(capsys, *argv)
    assert got == code and out == ""
    errors = [x for x in err.splitlines() if x.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(message), err


def test_unpack_refuses_a_non_empty_directory(env: OciLayout, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy/file").write_text("mine")
    code, _, err = _run(capsys, "image", "unpack", f"oci:{env.path}:v1", str(tmp_path / "busy"))
    assert code == 2 and "is not an empty directory" in err
    assert (tmp_path / "busy/file").read_text() == "mine"


def test_bad_ref_hint_lists_forms(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "image", "inspect", "UPPER/Case")
    assert code == 2 and "hint: accepted forms: registry:HOST/NAME" in err
