"""`bootc-py image ...` against the real registries: what a user sees."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from imagefix import PASSWORD, USER, Images

from bootc_py.cli import main
from bootc_py.run import output
from fstree import diff, snapshot
from registry_fixture import Registry, free_port

pytestmark = pytest.mark.registry  # a docker-registry on 127.0.0.1


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        main(list(argv))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def _error_line(err: str) -> str:
    lines = [x for x in err.splitlines() if x.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BOOTC_PY_CACHE_DIR", str(tmp_path / "cache"))
    empty = tmp_path / "no-auth.json"
    empty.write_text("{}")
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(empty))
    return tmp_path / "cache"


def test_pull_inspect_unpack(registry: Registry, images: Images, cache: Path, tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    ref = f"docker://{registry.host}/test/features:1"
    code, out, err = _run(capsys, "image", "pull", "--tls-verify=false", ref)
    skopeo = json.loads(output(["skopeo", "inspect", "--tls-verify=false", ref]))
    assert code == 0 and out.strip() == skopeo["Digest"]
    assert f"pulled {ref} (" in err and "fetched" in err
    code, out, _ = _run(capsys, "image", "pull", "--tls-verify=false", ref)
    assert code == 0
    code, out, _ = _run(capsys, "image", "inspect", "--tls-verify=false", ref)
    doc = json.loads(out)
    assert doc["digest"] == skopeo["Digest"] and doc["labels"] == skopeo["Labels"]
    assert [x["digest"] for x in doc["layers"]] == skopeo["Layers"]
    raw = json.loads(output(["skopeo", "inspect", "--raw", "--tls-verify=false", ref]))
    assert [x["size"] for x in doc["layers"]] == [x["size"] for x in raw["layers"]]
    assert doc["manifest"] == raw
    code, _, err = _run(capsys, "image", "unpack", "--tls-verify=false", ref,
                        str(tmp_path / "rootfs"))
    assert code == 0
    output(["umoci", "raw", "unpack", "--image", f"{images.layout}:features",
            str(tmp_path / "umoci")])
    a, b = snapshot(tmp_path / "umoci"), snapshot(tmp_path / "rootfs")
    assert not diff(a, b), "\n".join(diff(a, b))


def test_error_messages(registry: Registry, auth_registry: Registry, cache: Path,
                        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    code, out, err = _run(capsys, "image", "pull", "--tls-verify=false",
                          f"docker://{registry.host}/test/small:missing")
    assert code == 1 and out == ""
    assert _error_line(err) == (f"error: image {registry.host}/test/small:missing not found "
                                "(MANIFEST_UNKNOWN: manifest unknown)")
    code, _, err = _run(capsys, "image", "pull", "--tls-verify=false",
                        f"docker://{auth_registry.host}/private/small:1")
    assert code == 1
    assert _error_line(err) == (f"error: registry {auth_registry.host} requires "
                                "authentication for private/small")
    assert "hint: log in with `podman login` or pass --authfile" in err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"auths": {auth_registry.host: {
        "auth": base64.b64encode(f"{USER}:wrong".encode()).decode()}}}))
    code, _, err = _run(capsys, "image", "pull", "--tls-verify=false", "--authfile", str(bad),
                        f"docker://{auth_registry.host}/private/small:1")
    assert code == 1
    assert _error_line(err) == (f"error: registry {auth_registry.host} rejected the "
                                f"credentials for user '{USER}' (from {bad})")
    assert "wrong" not in err  # never the password
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"auths": {auth_registry.host: {
        "auth": base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}}}))
    code, out, err = _run(capsys, "-vv", "image", "pull", "--tls-verify=false", "--authfile",
                          str(good), f"docker://{auth_registry.host}/private/small:1")
    peer = json.loads(output(["skopeo", "inspect", "--tls-verify=false", "--creds",
                              f"{USER}:{PASSWORD}",
                              f"docker://{auth_registry.host}/private/small:1"]))
    assert code == 0 and out.split()[0] == peer["Digest"], (out, peer["Digest"])
    assert PASSWORD not in err and base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode() \
        not in err  # even at debug level
    code, _, err = _run(capsys, "image", "pull", "--tls-verify=false",
                        f"docker://127.0.0.1:{port}/x:1")
    assert code == 1 and _error_line(err).startswith(
        f"error: cannot reach registry 127.0.0.1:{port} (")
    assert "Connection refused" in err
    code, _, err = _run(capsys, "image", "pull", f"docker://{registry.host}/test/small:1")
    assert code == 1 and "TLS handshake failed" in _error_line(err)
    assert "hint: if the registry speaks plain http" in err
