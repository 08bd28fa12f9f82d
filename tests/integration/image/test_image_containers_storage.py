"""containers-storage: the digest bootc-py reports is the stored image's own.

containers-storage keeps layers uncompressed; skopeo's copy out of it re-compresses them, so the
copy's manifest has another digest. What `podman images --digests` and `skopeo inspect` show is
what an install must record (origin, `status`), or an update check against the registry the
image came from sees a "new" image that is the same one.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from imagefix import Images, require_tool

from bootc_py.image.ref import parse_imgref
from bootc_py.image.source import PullOptions, pull, resolve

if TYPE_CHECKING:
    from registry_fixture import Registry

BOOTC_PY = Path(sys.executable).parent / "bootc-py"


def sh(*argv: str) -> str:
    res = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, f"{' '.join(argv[:3])} failed: {res.stderr[-2000:]}"
    return res.stdout


@pytest.fixture()
def cstore(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    """A containers-storage of the test's own: (its transport prefix, podman's options). The
    runroot is short: podman refuses one longer than 50 characters."""
    run = Path(tempfile.mkdtemp(prefix="bpy-cs-", dir="/tmp"))
    root = tmp_path / "storage"
    yield (f"[vfs@{root}+{run}]",
           ["--root", str(root), "--runroot", str(run), "--storage-driver", "vfs"])
    shutil.rmtree(run, ignore_errors=True)


def podman_digest(podman: list[str], name: str) -> str:
    out = sh("podman", *podman, "images", "--digests", "--format",
             "{{.Repository}}:{{.Tag}} {{.Digest}}")
    return dict(line.split() for line in out.splitlines())[name]


def test_stored_image_digest_is_recorded(images: Images, cstore: tuple[str, list[str]],
                                         opts: PullOptions) -> None:
    require_tool("skopeo", "podman")
    ref = f"containers-storage:{cstore[0]}localhost/small:1"
    sh("skopeo", "copy", "--quiet", images.oci("small"), ref)
    own = json.loads(sh("skopeo", "inspect", ref))["Digest"]
    assert own == podman_digest(cstore[1], "localhost/small:1")
    # The layers as the storage hands them out are not the stored manifest's (gzip) blobs.
    copy_manifest = json.loads(sh("skopeo", "inspect", "--raw", images.oci("small")))
    img = pull(parse_imgref(ref), opts)
    assert img.manifest_digest == own
    assert resolve(parse_imgref(ref), opts).manifest_digest == own
    assert [x.digest for x in img.layers] != [x["digest"] for x in copy_manifest["layers"]]
    assert img.labels == {"version": "1"}
    # What a user sees: `image pull` prints it, `image inspect` reports it.
    env_cache = ["--cache-dir", str(opts.cache_dir)]
    res = subprocess.run([str(BOOTC_PY), "image", "pull", *env_cache, ref],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == own
    res = subprocess.run([str(BOOTC_PY), "image", "inspect", *env_cache, ref],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["digest"] == own


@pytest.mark.registry
def test_stored_index_records_the_platform_manifest(images: Images, registry: Registry,
                                                    cstore: tuple[str, list[str]],
                                                    opts: PullOptions) -> None:
    """A multi-arch image pulled by podman: the amd64 entry's digest, as a pull of the same
    index from the registry records it (an update check compares the two)."""
    require_tool("skopeo", "podman")
    sh("podman", *cstore[1], "pull", "--quiet", "--tls-verify=false", "--arch", "amd64",
       f"{registry.host}/test/multi:1")
    ref = f"containers-storage:{cstore[0]}{registry.host}/test/multi:1"
    index = json.loads(sh("skopeo", "inspect", "--raw", images.oci("multi")))
    amd64 = next(m["digest"] for m in index["manifests"]
                 if m["platform"]["architecture"] == "amd64")
    assert pull(parse_imgref(ref), opts).manifest_digest == amd64
    from_registry = pull(parse_imgref(f"docker://{registry.host}/test/multi:1"), opts)
    assert from_registry.manifest_digest == amd64
