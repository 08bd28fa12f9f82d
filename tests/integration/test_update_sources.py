"""Where an offline upgrade/switch pulls from: registries.conf mirrors (a fleet's pull-through
cache: a second docker-registry in proxy mode in front of the first), insecure entries, and the
pull secret (/etc/ostree/auth.json, bootc's place, before the containers auth files) for an
htpasswd-protected registry, never logged.

One installed disk (v1 from an OCI layout), one chain: the sysroot's own
/etc/containers/registries.conf.d and /etc/ostree/auth.json are what the updater reads.
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from synthetic import Result, base_tree, build_image, run_cli
from test_update_offline import mounted

from registry_fixture import Registry
from testlib import require_tool

REPO = "os/syn"
USER, PASSWORD = "fleet", "pull-secret-7f3a9c"

pytestmark = pytest.mark.root


def _top(variant: str):  # type: ignore[no-untyped-def]
    def fill(root: Path) -> None:
        (root / "usr/share/syn").mkdir(parents=True)
        (root / "usr/share/syn/variant").write_text(variant + "\n")
    return fill


# The containers auth files the updater may read: none, unless a step names one.
NO_AUTH = {"REGISTRY_AUTH_FILE": "/nonexistent/auth.json"}


def _sysroot_cli(mnt: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    return run_cli(*args, "--sysroot", str(mnt), env={**NO_AUTH, **(env or {})})


def _default_root(mnt: Path) -> Path:
    st: dict[str, Any] = json.loads(_sysroot_cli(mnt, "status", "--json").stdout)
    dep = next(d for d in st["status"]["deployments"] if d["default"])["ostree"]
    return mnt / "ostree/deploy/default/deploy" / f"{dep['checksum']}.{dep['deploySerial']}"


def _variant(mnt: Path) -> str:
    return (_default_root(mnt) / "usr/share/syn/variant").read_text().strip()


def _top_digest(layout: Path, tag: str) -> str:
    index = json.loads((layout / "index.json").read_text())
    desc = next(m for m in index["manifests"]
                if m["annotations"]["org.opencontainers.image.ref.name"] == tag)
    manifest = json.loads((layout / "blobs/sha256" / desc["digest"].split(":")[1]).read_text())
    return str(manifest["layers"][-1]["digest"])


def _wait_for_blobs(registry: Registry, layout: Path, tags: tuple[str, ...],
                    timeout: float = 60) -> None:
    index = json.loads((layout / "index.json").read_text())
    want: dict[str, int] = {}
    for m in index["manifests"]:
        if m["annotations"]["org.opencontainers.image.ref.name"] in tags:
            manifest = json.loads(
                (layout / "blobs/sha256" / m["digest"].split(":")[1]).read_text())
            for d in [manifest["config"], *manifest["layers"]]:
                want[d["digest"]] = d["size"]
    deadline = time.monotonic() + timeout
    while True:
        missing = [d for d, size in want.items() if not registry.blob_file(d).exists()
                   or registry.blob_file(d).stat().st_size != size]
        if not missing:
            return
        assert time.monotonic() < deadline, f"the mirror never stored {missing}"
        time.sleep(0.2)


def test_mirror_insecure_entries_and_pull_secret(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    require_tool("docker-registry", "skopeo", "ostree", "htpasswd")
    layout = tmp_path / "oci"
    for n in range(1, 5):
        build_image(layout, f"v{n}", [base_tree, _top(f"v{n}")], work=tmp_path / "build")
    host_conf = tmp_path / "host-registries.conf"  # the running host's: names nothing
    host_conf.write_text("")
    # run_cli inherits it (not REGISTRY_AUTH_FILE: docker-registry reads REGISTRY_* too)
    monkeypatch.setenv("CONTAINERS_REGISTRIES_CONF", str(host_conf))
    disk = tmp_path / "disk.raw"
    res = run_cli("install", "to-disk", "--via-loopback", "--disk-size", "3G",
                  "--source-imgref", f"oci:{layout}:v1", "--cache-dir",
                  str(tmp_path / "cache"), str(disk))
    assert res.returncode == 0, res.stderr

    with Registry(tmp_path / "origin", accesslog=True) as origin, \
            mounted(disk) as mnt:
        origin.push(layout, "v2", f"{REPO}:latest")
        origin.push(layout, "v3", f"{REPO}:other")
        with Registry(tmp_path / "mirror", proxy=f"http://{origin.host}",
                      accesslog=True) as mirror:
            # Warm the pull-through cache, then take the origin away.
            for tag in ("latest", "other"):
                subprocess.run(["skopeo", "copy", "--quiet", "--src-tls-verify=false",
                                f"docker://{mirror.host}/{REPO}:{tag}",
                                f"oci:{tmp_path / 'warm'}:{tag}"], check=True)
            # The proxy stores a blob while it streams it: wait for the whole blobs to be in
            # its storage before the origin goes (else it asks the origin and answers 500).
            _wait_for_blobs(mirror, layout, ("v2", "v3"))
            origin.stop()
            target = f"docker://{origin.host}/{REPO}:latest"

            # Without the sysroot's registries.conf.d the origin is all there is: down.
            res = _sysroot_cli(mnt, "switch", target)
            assert res.returncode != 0
            assert origin.host in res.stderr and "Traceback" not in res.stderr

            # The sysroot names the mirror; only its insecure entries allow plain http.
            dropin = _default_root(mnt) / "etc/containers/registries.conf.d"
            dropin.mkdir(parents=True)
            (dropin / "50-mirror.conf").write_text(
                f'[[registry]]\nlocation = "{origin.host}"\ninsecure = true\n'
                f'[[registry.mirror]]\nlocation = "{mirror.host}"\ninsecure = true\n')
            before = mirror.log_text()
            res = _sysroot_cli(mnt, "switch", target)
            assert res.returncode == 0, res.stderr
            assert _variant(mnt) == "v2"
            served = mirror.log_text()[len(before):]
            blob = _top_digest(layout, "v2")
            assert any(f"/blobs/{blob}" in line and "bootc-py" in line
                       for line in served.splitlines()), served

            # upgrade too (following another tag), the origin still down; the /etc merge
            # carried the drop-in into the new deployment.
            res = _sysroot_cli(mnt, "upgrade", "--tag", "other")
            assert res.returncode == 0, res.stderr
            assert _variant(mnt) == "v3"

    # The pull secret: an htpasswd-protected registry.
    with Registry(tmp_path / "private", users={USER: PASSWORD}) as private, \
            mounted(disk) as mnt:
        private.push(layout, "v4", f"{REPO}:latest", creds=f"{USER}:{PASSWORD}")
        etc = _default_root(mnt) / "etc"
        (etc / "containers/registries.conf.d/60-private.conf").write_text(
            f'[[registry]]\nlocation = "{private.host}"\ninsecure = true\n')
        target = f"docker://{private.host}/{REPO}:latest"
        token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()

        def auth_json(password: str) -> str:
            raw = base64.b64encode(f"{USER}:{password}".encode()).decode()
            return json.dumps({"auths": {private.host: {"auth": raw}}})

        # No secret anywhere: a one-line refusal.
        res = _sysroot_cli(mnt, "switch", target)
        assert res.returncode != 0 and "requires authentication" in res.stderr, res.stderr
        assert "Traceback" not in res.stderr

        # bootc's /etc/ostree/auth.json wins over a containers auth file (a wrong one here).
        wrong = tmp_path / "containers-auth.json"
        wrong.write_text(auth_json("wrong-password"))
        (etc / "ostree").mkdir(exist_ok=True)
        (etc / "ostree/auth.json").write_text(auth_json(PASSWORD))
        res = _sysroot_cli(mnt, "-vv", "switch", target, env={"REGISTRY_AUTH_FILE": str(wrong)})
        assert res.returncode == 0, res.stderr
        assert _variant(mnt) == "v4"
        for secret in (PASSWORD, token):
            assert secret not in res.stdout and secret not in res.stderr

        # Without /etc/ostree/auth.json the containers auth files are read (right one here).
        (_default_root(mnt) / "etc/ostree/auth.json").unlink()
        right = tmp_path / "containers-auth-right.json"
        right.write_text(auth_json(PASSWORD))
        private.push(layout, "v3", f"{REPO}:latest", creds=f"{USER}:{PASSWORD}")
        res = _sysroot_cli(mnt, "-vv", "upgrade", env={"REGISTRY_AUTH_FILE": str(right)})
        assert res.returncode == 0, res.stderr
        assert _variant(mnt) == "v3"
        for secret in (PASSWORD, token):
            assert secret not in res.stdout and secret not in res.stderr
