"""The updater on an installed disk, offline (`--sysroot` on the loop-mounted root): real loop
devices, xfs, ostree, GRUB config and a docker-registry on 127.0.0.1 marked insecure through
registries.conf, as a host's would be.

The tests run in file order on one installed disk (module scope): v1 installed, then upgrades
to v2..v5, a switch to an OCI layout and back, rollbacks, a download-only update, a refusal
for lack of space. Each test states the disk state it starts from.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
from synthetic import base_tree, build_image, run_cli

from bootc_py.disk.loop import LoopDevice
from bootc_py.disk.mount import Mount
from registry_fixture import Registry
from testlib import require_tool

REPO = "os/syn"
BIG = 6 << 20  # an incompressible file in v3's top layer, to make space matter
ZEROS = 300 << 20  # v6's top layer: 300 MiB of zeros, a few hundred KB compressed


def _top(variant: str, big: bool = False,  # type: ignore[no-untyped-def]
         zeros: int = 0):
    def fill(root: Path) -> None:
        (root / "usr/share/syn").mkdir(parents=True)
        (root / "usr/share/syn/variant").write_text(variant + "\n")
        (root / "etc/syn").mkdir(parents=True)
        # admin.conf: the admin edits it locally; image.conf: only the image changes it.
        (root / "etc/syn/admin.conf").write_text(f"image {variant}\n")
        (root / "etc/syn/image.conf").write_text(f"image {variant}\n")
        if big:
            (root / "usr/share/syn/big").write_bytes(os.urandom(BIG))
        if zeros:
            # Compresses to almost nothing, expands to `zeros` bytes: beats any estimate.
            with open(root / "usr/share/syn/zeros", "wb") as f:
                f.truncate(zeros)
    return fill


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("update-images")
    layout = work / "oci"
    for n in range(1, 7):
        build_image(layout, f"v{n}", [base_tree, _top(f"v{n}", big=n == 3,
                                                      zeros=ZEROS if n == 6 else 0)],
                    work=work / "build",
                    labels={"org.opencontainers.image.version": f"{n}.0"})
    return layout


def _layout_index(layout: Path, tag: str) -> dict[str, Any]:
    index = json.loads((layout / "index.json").read_text())
    desc = next(m for m in index["manifests"]
                if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag)
    digest = desc["digest"]
    manifest = json.loads((layout / "blobs/sha256" / digest.split(":")[1]).read_text())
    return {"digest": digest, "manifest": manifest}


@pytest.fixture(scope="module")
def registry(images: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    require_tool("docker-registry", "skopeo", "ostree")
    with Registry(tmp_path_factory.mktemp("registry")) as reg:
        reg.push(images, "v1", f"{REPO}:latest")
        conf = tmp_path_factory.mktemp("conf") / "registries.conf"
        conf.write_text(f'[[registry]]\nlocation = "{reg.host}"\ninsecure = true\n')
        os.environ["CONTAINERS_REGISTRIES_CONF"] = str(conf)  # the CLI runs inherit it
        yield reg
        os.environ.pop("CONTAINERS_REGISTRIES_CONF", None)


@pytest.fixture(scope="module")
def disk(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("update-disk")
    path = work / "disk.raw"
    res = run_cli("install", "to-disk", "--via-loopback", "--disk-size", "3G",
                  "--source-imgref", f"docker://{registry.host}/{REPO}:latest",
                  "--cache-dir", str(work / "cache"), str(path))
    assert res.returncode == 0, res.stderr
    return path


@contextmanager
def mounted(disk: Path) -> Iterator[Path]:
    with ExitStack() as stack:
        loop = stack.enter_context(LoopDevice(disk))
        mnt = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bootc-py-upd-")))
        stack.enter_context(Mount(loop.partition(4), mnt))
        stack.enter_context(Mount(loop.partition(3), mnt / "boot"))
        yield mnt


def cli(mnt: Path, *args: str) -> str:
    res = run_cli(*args, "--sysroot", str(mnt))
    assert res.returncode == 0, f"{args}: {res.stderr}"
    return res.stdout


def status(mnt: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(cli(mnt, "status", "--json"))
    return doc


def default_and_rollback(mnt: Path) -> tuple[str, str | None]:
    """(version of the default, version of the rollback) as status reports them."""
    st = status(mnt)
    deps = st["status"]["deployments"]
    default = next(d for d in deps if d["default"])
    rb = st["status"]["rollback"]
    return default["image"]["version"], rb["image"]["version"] if rb else None


def deployed_variant(mnt: Path) -> str:
    """What the default deployment's /usr holds (the first BLS entry's deployment)."""
    st = status(mnt)
    dep = next(d for d in st["status"]["deployments"] if d["default"])["ostree"]
    root = mnt / "ostree/deploy/default/deploy" / f"{dep['checksum']}.{dep['deploySerial']}"
    return (root / "usr/share/syn/variant").read_text().strip()


def grub_follows_loader(mnt: Path) -> bool:
    """grub.cfg was regenerated from the current BLS entries (boot.N is the live bootversion)."""
    bootversion = os.readlink(mnt / "boot/loader").rsplit(".", 1)[1]
    cfg = (mnt / "boot/grub/grub.cfg").read_text()
    return f"/ostree/boot.{bootversion}/" in cfg


def layer_blobs_in_cache(mnt: Path, layout: Path, tag: str) -> list[str]:
    cache = mnt / "ostree/bootc-py/cache/blobs/sha256"
    layers = _layout_index(layout, tag)["manifest"]["layers"]
    return [x["digest"] for x in layers if (cache / x["digest"].split(":")[1]).exists()]


def programs_run(debug_log: str, word: str) -> int:
    """How many programs whose command line holds `word` a -vv run started."""
    return sum(1 for line in debug_log.splitlines()
               if line.startswith("run: ") and " exited " not in line and word in line)


def test_check_finds_the_update_and_fetches_no_layer(disk: Path, registry: Registry,
                                                     images: Path) -> None:
    # Start: v1 installed. v2 pushed.
    registry.push(images, "v2", f"{REPO}:latest")
    v2 = _layout_index(images, "v2")["digest"]
    with mounted(disk) as mnt:
        res = run_cli("-vv", "upgrade", "--check", "--json", "--sysroot", str(mnt))
        assert res.returncode == 0, res.stderr
        # The check's fixed cost: one libostree helper run lists the deployments with their
        # commits' metadata; no `ostree show` per commit, no second listing (-vv logs each run).
        assert programs_run(res.stderr, "libostree_helper.py") == 1, res.stderr
        assert programs_run(res.stderr, " show ") == 0, res.stderr
        out = json.loads(res.stdout)
        assert out["updateAvailable"] is True
        assert out["availableDigest"] == v2
        assert out["version"] == "2.0"
        assert out["bytesFetched"] == 0 and not out["deployed"]
        assert layer_blobs_in_cache(mnt, images, "v2") == []  # manifest + config only
        st = status(mnt)
        cached = st["status"]["deployments"][0]["cachedUpdate"]
        assert cached["imageDigest"] == v2 and cached["version"] == "2.0"
        human = cli(mnt, "status", "--format", "humanreadable")
        assert f"Update found: 2.0 ({v2})" in human
        assert default_and_rollback(mnt) == ("1.0", None)  # nothing deployed


def test_upgrade_fetches_only_the_changed_layer_and_merges_etc(disk: Path, images: Path,
                                                                registry: Registry) -> None:
    # Start: v1 default, v2 in the registry. The admin edits /etc and writes to /var.
    top = _layout_index(images, "v2")["manifest"]["layers"][-1]
    with mounted(disk) as mnt:
        st = status(mnt)
        dep = st["status"]["deployments"][0]["ostree"]
        root = mnt / "ostree/deploy/default/deploy" / f"{dep['checksum']}.{dep['deploySerial']}"
        (root / "etc/syn/admin.conf").write_text("edited by the admin\n")
        var = mnt / "ostree/deploy/default/var"
        (var / "lib/app-data").parent.mkdir(parents=True, exist_ok=True)
        (var / "lib/app-data").write_text("precious\n")
        res = run_cli("-vv", "upgrade", "--json", "--sysroot", str(mnt))
        assert res.returncode == 0, res.stderr
        # One listing before and one after the deploy; the commits' metadata comes with them.
        assert programs_run(res.stderr, "libostree_helper.py") == 2, res.stderr
        assert programs_run(res.stderr, " show ") == 0, res.stderr
        out = json.loads(res.stdout)
        assert out["deployed"] and not out["staged"]  # offline: the default at once
        assert out["layersFetched"] == 1
        assert out["bytesFetched"] == top["size"]  # exactly the changed layer's blob
        assert default_and_rollback(mnt) == ("2.0", "1.0")
        assert deployed_variant(mnt) == "v2"
        st = status(mnt)
        new = next(d for d in st["status"]["deployments"] if d["default"])["ostree"]
        new_root = (mnt / "ostree/deploy/default/deploy"
                    / f"{new['checksum']}.{new['deploySerial']}")
        assert (new_root / "etc/syn/admin.conf").read_text() == "edited by the admin\n"
        assert (new_root / "etc/syn/image.conf").read_text() == "image v2\n"
        assert (var / "lib/app-data").read_text() == "precious\n"
        # The install's kernel arguments carried over; grub.cfg follows the new entries.
        entries = sorted((mnt / "boot/loader/entries").glob("*.conf"))
        assert len(entries) == 2
        assert all("root=UUID=" in e.read_text() for e in entries)
        assert grub_follows_loader(mnt)
        # No double storage: the imported blobs are not kept beside the ostree objects.
        assert layer_blobs_in_cache(mnt, images, "v2") == []
        # The check's record is spent.
        assert st["status"]["deployments"][0]["cachedUpdate"] is None


def test_unchanged_digest_is_a_no_op(disk: Path) -> None:
    # Start: v2 default, v1 rollback; the registry still has v2.
    with mounted(disk) as mnt:
        before = status(mnt)
        out = cli(mnt, "upgrade")
        assert "No changes" in out and "nothing to do" in out
        assert status(mnt) == before
        check = json.loads(cli(mnt, "upgrade", "--check", "--json"))
        assert check["updateAvailable"] is False and check["availableDigest"] is None


def test_rollback_and_back(disk: Path) -> None:
    # Start: v2 default, v1 rollback.
    with mounted(disk) as mnt:
        out = cli(mnt, "rollback")
        assert "Next boot" in out
        assert default_and_rollback(mnt) == ("1.0", "2.0")
        assert deployed_variant(mnt) == "v1"
        assert grub_follows_loader(mnt)
        cli(mnt, "rollback")
        assert default_and_rollback(mnt) == ("2.0", "1.0")
        assert grub_follows_loader(mnt)


def test_space_refusal_names_both_figures(disk: Path, registry: Registry,
                                          images: Path) -> None:
    # Start: v2 default. v3 (with a 6 MiB layer) pushed; the disk is nearly full.
    registry.push(images, "v3", f"{REPO}:latest")
    with mounted(disk) as mnt:
        before = status(mnt)
        filler = mnt / "filler"
        free = os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize
        subprocess.run(["fallocate", "-l", str(free - (4 << 20)), str(filler)], check=True)
        try:
            res = run_cli("upgrade", "--sysroot", str(mnt))
            assert res.returncode != 0
            line = res.stderr.splitlines()[0]
            assert line.startswith("error: not enough space for the update")
            assert "MB" in line and "needs about" in line and "free" in line
            assert "Traceback" not in res.stderr
            assert status(mnt) == before  # nothing fetched, nothing deployed
        finally:
            filler.unlink()
        out = json.loads(cli(mnt, "upgrade", "--json"))
        assert out["deployed"] and default_and_rollback(mnt) == ("3.0", "2.0")


def test_cleanup_after_several_upgrades(disk: Path, registry: Registry, images: Path) -> None:
    # Start: v3 default (with its 6 MiB layer), v2 rollback. Then v4 and v5.
    with mounted(disk) as mnt:
        big = next(x for x in _layout_index(images, "v3")["manifest"]["layers"]
                   if x["size"] > BIG)
        assert big
        registry.push(images, "v4", f"{REPO}:latest")
        cli(mnt, "upgrade")
        with_v3 = _repo_bytes(mnt)
        registry.push(images, "v5", f"{REPO}:latest")
        cli(mnt, "upgrade")
        assert default_and_rollback(mnt) == ("5.0", "4.0")
        # Only the default and the rollback are left, with their layers and nothing else.
        deploys = list((mnt / "ostree/deploy/default/deploy").glob("*.origin"))
        assert len(deploys) == 2
        refs = subprocess.run(["ostree", f"--repo={mnt}/ostree/repo", "refs"], check=True,
                              capture_output=True, text=True).stdout.split()
        layer_refs = [r for r in refs if r.startswith("bootc-py/layer/")]
        assert len(layer_refs) == 3  # base + the tops of v4 and v5
        # v3's big layer left with v3: its objects were pruned.
        assert with_v3 - _repo_bytes(mnt) > BIG // 2


def _repo_bytes(mnt: Path) -> int:
    out = subprocess.run(["du", "-sb", str(mnt / "ostree/repo/objects")], check=True,
                         capture_output=True, text=True).stdout
    return int(out.split()[0])


def test_download_only_then_from_downloaded(disk: Path, registry: Registry,
                                            images: Path) -> None:
    # Start: v5 default, v4 rollback. v1 pushed again as latest (a "new" digest to follow).
    registry.push(images, "v1", f"{REPO}:latest")
    with mounted(disk) as mnt:
        out = cli(mnt, "upgrade", "--download-only")
        assert "downloaded" in out
        assert default_and_rollback(mnt)[0] == "5.0"  # not applied
        # No registry contact: the registry is down while the downloaded update applies.
        registry.stop()
        try:
            res = run_cli("upgrade", "--from-downloaded", "--sysroot", str(mnt))
            assert res.returncode == 0, res.stderr
        finally:
            registry.start()  # on a new port: the later tests use registry.host
            Path(os.environ["CONTAINERS_REGISTRIES_CONF"]).write_text(
                f'[[registry]]\nlocation = "{registry.host}"\ninsecure = true\n')
        assert default_and_rollback(mnt)[0] == "1.0"
        assert deployed_variant(mnt) == "v1"
        assert grub_follows_loader(mnt)


def test_switch_to_an_oci_layout_and_back(disk: Path, registry: Registry,
                                          images: Path) -> None:
    # Start: v1 default (from the registry). Switch to the OCI layout's v2 (the USB case).
    with mounted(disk) as mnt:
        out = cli(mnt, "switch", "--transport", "oci", f"{images}:v2")
        assert "deployed as the default" in out
        st = status(mnt)
        assert st["spec"]["image"] == {"image": f"{images}:v2", "transport": "oci"}
        assert deployed_variant(mnt) == "v2"
        # upgrade now follows the layout: nothing new there.
        assert "No changes" in cli(mnt, "upgrade")
        # --mutate-in-place: only the origin changes.
        before = [d["ostree"] for d in st["status"]["deployments"]]
        cli(mnt, "switch", "--mutate-in-place", f"{registry.host}/{REPO}:latest")
        st = status(mnt)
        assert st["spec"]["image"] == {"image": f"{registry.host}/{REPO}:latest",
                                       "transport": "registry"}
        assert [d["ostree"] for d in st["status"]["deployments"]] == before
        out = json.loads(cli(mnt, "upgrade", "--json"))
        assert out["deployed"] and deployed_variant(mnt) == "v1"


def test_status_formats_agree(disk: Path) -> None:
    with mounted(disk) as mnt:
        as_json = status(mnt)
        yaml_text = cli(mnt, "status", "--format", "yaml")
        assert cli(mnt, "status") == yaml_text  # not a terminal: YAML, as bootc
        parsed = subprocess.run(
            ["/usr/bin/python3", "-c",
             "import json,sys,yaml; print(json.dumps(yaml.safe_load(sys.stdin)))"],
            input=yaml_text, check=True, capture_output=True, text=True).stdout
        assert json.loads(parsed) == as_json
        booted = json.loads(cli(mnt, "status", "--json", "--booted"))
        assert booted["status"]["rollback"] is None
        assert len(booted["status"]["deployments"]) == 1
        verbose = cli(mnt, "status", "--format", "humanreadable", "-v")
        assert "Deployment: default" in verbose and "Rollback image:" in verbose


def test_refusals(disk: Path) -> None:
    with mounted(disk) as mnt:
        for args, words in ((("upgrade", "--apply"), "not the booted sysroot"),
                            (("upgrade", "--check", "--download-only"), "--check only looks"),
                            (("switch", "--transport", "tape", "x"), "unknown transport"),
                            (("status", "--format", "xml"), "unknown format")):
            res = run_cli(*args, "--sysroot", str(mnt))
            assert res.returncode != 0 and words in res.stderr, (args, res.stderr)
            assert "Traceback" not in res.stderr


def test_disk_full_mid_import_fails_clearly_and_leaves_the_host_as_it_was(
        disk: Path, registry: Registry, images: Path) -> None:
    # Start: some default and rollback. v6's layer passes the space check (it is tiny
    # compressed) but expands to 300 MiB, more than the 100 MiB left free.
    registry.push(images, "v6", f"{REPO}:latest")
    with mounted(disk) as mnt:
        before = status(mnt)
        filler = mnt / "filler"
        free = os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize
        subprocess.run(["fallocate", "-l", str(free - (100 << 20)), str(filler)], check=True)
        try:
            free_before = os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize
            res = run_cli("upgrade", "--sysroot", str(mnt))
            assert res.returncode != 0
            errors = [x for x in res.stderr.splitlines() if x.startswith("error: ")]
            assert len(errors) == 1 and errors[0].startswith(
                "error: the sysroot filled up while importing"), res.stderr
            assert "Traceback" not in res.stderr
            assert status(mnt) == before  # the default deployment is untouched
            free_after = os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize
            assert abs(free_after - free_before) < (8 << 20)  # the partial import is gone
            assert not [p for p in (mnt / "ostree/repo/tmp").iterdir()
                        if p.name.startswith(("bootc-py-", "staging-"))]
        finally:
            filler.unlink()
        # With the space back, the same upgrade succeeds.
        out = json.loads(cli(mnt, "upgrade", "--json"))
        assert out["deployed"] and default_and_rollback(mnt)[0] == "6.0"


def test_a_pinned_deployment_outlives_upgrades(disk: Path, registry: Registry,
                                               images: Path) -> None:
    # Start: v6 default and a rollback. Pin the rollback; two upgrades later it is still there.
    from bootc_py.store.sysroot import Sysroot

    with mounted(disk) as mnt:
        store = Sysroot(mnt)
        pinned = store.rollback()
        assert pinned is not None
        store.pin(pinned)
        for tag in ("v2", "v4"):
            registry.push(images, tag, f"{REPO}:latest")
            cli(mnt, "upgrade")
        deps = store.deployments()
        assert [d.key for d in deps if d.pinned] == [pinned.key]
        assert len(deps) == 3  # default (v4), rollback (v2), and the pinned one
        assert default_and_rollback(mnt) == ("4.0", "2.0")
        listed = status(mnt)["status"]["deployments"]
        assert [d["pinned"] for d in listed] == [False, False, True]
