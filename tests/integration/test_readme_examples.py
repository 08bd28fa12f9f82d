"""Every example command in README.md runs, as written.

The fenced commands are read from the README itself; only the placeholders are substituted
(the image reference, the disk, the directory, the kickstart): `docker://registry/os:1` is a
synthetic bootable image in a docker-registry on 127.0.0.1, `/dev/sda` a loop device,
`/mnt/target` a mounted ext4 filesystem. `[a|b]` runs each alternative and the form without it.
The commands for an installed host run with `--sysroot` on the mounted install (as the README
says every verb but usr-overlay can), in the README's order; `--apply` (a reboot) is refused
there in one line; `usr-overlay`, which needs the booted host, is in BOOTED_HOST_ONLY with the
test that runs it.

A README example that is not run here fails `test_every_readme_example_is_run`.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shlex
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from synthetic import BOOTC_PY, SyntheticImages, run_cli

from bootc_py.disk.loop import LoopDevice
from bootc_py.disk.mount import Mount
from registry_fixture import Registry
from testlib import require_tool

REPO_ROOT = Path(__file__).resolve().parents[2]
README = REPO_ROOT / "README.md"

# The README's two top commands are the suite itself and the demo boot: not run from a test.
NOT_RUN_HERE = {
    "bash scripts/setup.sh && .venv/bin/python vm-fixtures/demo":
        "boots under qemu: tests/vm/test_fixture_harness.py runs vmharness.demo",
    "bash scripts/setup.sh && .venv/bin/pytest": "the whole suite: .ci/run runs it in CI",
}
# Needs the booted host (a reboot, a live /usr): refused with --sysroot, run in the VM tests.
BOOTED_HOST_ONLY = {
    "bootc-py usr-overlay":
        "a live /usr, no --sysroot form: tests/vm/test_install_coverage.py's ext4 boot runs it",
    "bootc-py install to-existing-root --source-imgref IMGREF /":
        "takes over the running root: tests/vm/test_takeover_boot.py runs it in a plain Debian VM",
    "bootc-py install reset [--stateroot NAME] [--apply]":
        "deploys the booted image: tests/vm/test_takeover_boot.py's reset test runs it",
}
# Run as written by another test (named), with only the placeholders replaced.
RUN_ELSEWHERE = {
    "bootc-py install finalize /mnt/target":
        "tests/integration/test_install_existing_root.py (alongside test, and the refusal)",
    "bootc-py install bootloader --generic-image /mnt/target":
        "tests/integration/test_install_bootloader_none.py (after a --bootloader none install)",
}


def readme_commands() -> list[str]:
    """The example commands of README.md's fenced blocks, comments and output lines dropped."""
    commands = []
    for lang, block in re.findall(r"^[ \t]*```([^\n]*)\n(.*?)^[ \t]*```", README.read_text(),
                                  re.S | re.M):
        if lang.strip() not in ("", "sh", "bash", "console"):
            continue  # a configuration file's example (toml), not a command
        for line in block.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


def forms(command: str) -> list[list[str]]:
    """`cmd [--opt a|b] [X|Y]` -> the argv of each form: every option group omitted, then each
    alternative of each group (a positional group `[X|Y]` is never omitted). `a | b` as the
    last words is two commands (`image list | prune`)."""
    words = shlex.split(command)
    if "|" in words:
        i = words.index("|")
        return [words[:i], [*words[:i - 1], *words[i + 1:]]]
    fixed: list[str | list[list[str]]] = []
    group: list[str] | None = None
    for w in words:
        if w.startswith("["):
            group, w = [], w[1:]
        if group is None:
            fixed.append(w)
            continue
        end = w.endswith("]")
        group.append(w.removesuffix("]"))
        if end:
            *head, last = group
            fixed.append([[*head, alt] for alt in last.split("|")])
            group = None
    groups = [i for i, x in enumerate(fixed) if isinstance(x, list)]

    def build(choice: dict[int, list[str] | None]) -> list[str]:
        argv: list[str] = []
        for i, x in enumerate(fixed):
            if isinstance(x, str):
                argv.append(x)
            elif choice.get(i) is not None:
                argv.extend(choice[i] or [])
        return argv

    def optional(i: int) -> bool:
        alts = fixed[i]
        assert isinstance(alts, list)
        return alts[0][0].startswith("-")

    base = {i: (None if optional(i) else fixed[i][0]) for i in groups}  # type: ignore[index]
    out = [build(base)]
    for i in groups:
        alts = fixed[i]
        assert isinstance(alts, list)
        for alt in alts:
            form = build({**base, i: alt})
            if form not in out:
                out.append(form)
    return out


def test_forms_expand_the_readme_notation() -> None:
    assert forms("bootc-py status [--format humanreadable|yaml|json] [--booted]") == [
        ["bootc-py", "status"], ["bootc-py", "status", "--format", "humanreadable"],
        ["bootc-py", "status", "--format", "yaml"], ["bootc-py", "status", "--format", "json"],
        ["bootc-py", "status", "--booted"]]
    assert forms("bootc-py container lint [ROOTFS|IMGREF]") == [
        ["bootc-py", "container", "lint", "ROOTFS"], ["bootc-py", "container", "lint", "IMGREF"]]
    assert forms("bootc-py image list | prune") == [["bootc-py", "image", "list"],
                                                    ["bootc-py", "image", "prune"]]


# Which test runs which README command (exact text, comment stripped).
INSTALL = ["bootc-py install to-disk --wipe --source-imgref docker://registry/os:1 /dev/sda",
           "bootc-py install to-disk --via-loopback --source-imgref oci:DIR:v1 disk.raw",
           "bootc-py install to-disk --dry-run ...",
           "bootc-py install to-filesystem --source-imgref IMGREF /mnt/target",
           "bootc-py install print-configuration IMGREF",
           "bootc-py container lint [ROOTFS|IMGREF]"]
BUILD = ["bootc-py build --type qcow2 --type raw --output out/ docker://registry/os:1"]
HOST = ["bootc-py status [--format humanreadable|yaml|json] [--booted] [-v]",
        "bootc-py upgrade --check [--json]",
        "bootc-py upgrade [--apply]",
        "bootc-py upgrade --download-only",
        "bootc-py upgrade --from-downloaded",
        "bootc-py switch [--transport oci] TARGET",
        "bootc-py rollback [--apply]"]
KICKSTART = ["bootc-py kickstart validate ks.cfg",
             "bootc-py install kickstart ks.cfg --dry-run",
             "bootc-py install kickstart ks.cfg --via-loopback disk.raw",
             "bootc-py install kickstart http://host/ks.cfg",
             "bootc-py build --type qcow2 --kickstart ks.cfg docker://registry/os:1"]
IMAGE = ["bootc-py image pull IMGREF", "bootc-py image inspect IMGREF",
         "bootc-py image unpack IMGREF DIR", "bootc-py image list | prune"]


def test_every_readme_example_is_run() -> None:
    covered = [*NOT_RUN_HERE, *BOOTED_HOST_ONLY, *RUN_ELSEWHERE, *INSTALL, *BUILD, *HOST,
               *KICKSTART, *IMAGE]
    assert sorted(readme_commands()) == sorted(covered)


def readme(*commands: str) -> list[str]:
    """The README's text for these commands (fails if the README no longer has one)."""
    have = readme_commands()
    for c in commands:
        assert c in have, f"README.md no longer has the example {c!r}"
    return list(commands)


# The real parts.

@pytest.fixture(scope="module")
def registry(synthetic: SyntheticImages, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[Registry]:
    require_tool("docker-registry", "skopeo")
    with Registry(tmp_path_factory.mktemp("readme-registry")) as reg:
        reg.push(synthetic.layout, "v1", "os:1")
        conf = tmp_path_factory.mktemp("readme-conf") / "registries.conf"
        conf.write_text(f'[[registry]]\nlocation = "{reg.host}"\ninsecure = true\n')
        old = os.environ.get("CONTAINERS_REGISTRIES_CONF")
        os.environ["CONTAINERS_REGISTRIES_CONF"] = str(conf)  # the CLI runs inherit it
        yield reg
        if old is None:
            os.environ.pop("CONTAINERS_REGISTRIES_CONF", None)
        else:
            os.environ["CONTAINERS_REGISTRIES_CONF"] = old


@pytest.fixture()
def loop_disk(tmp_path: Path) -> Iterator[Path]:
    disk = tmp_path / "sda.raw"
    with open(disk, "wb") as f:
        f.truncate(5 << 30)
    with LoopDevice(disk) as loop:
        yield loop.path


def run(argv: list[str], subst: dict[str, str], cwd: Path, cache: Path) -> str:
    """Run one README form with its placeholders replaced; it must succeed."""
    args = [subst.get(a, a) for a in argv]
    assert args[0] == "bootc-py"
    extra = ["--cache-dir", str(cache)] if _takes_cache(args) else []
    proc = subprocess.run([str(BOOTC_PY), *args[1:], *extra],
                          capture_output=True, text=True, cwd=cwd, timeout=900)
    assert proc.returncode == 0, f"{shlex.join(args)}:\n{proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stderr
    return proc.stdout


def _takes_cache(args: list[str]) -> bool:
    # The README's commands use the default cache (/var/lib/bootc-py/cache); the tests use
    # their own, which is the one option added (not a placeholder, but a shared machine).
    verbs = args[1:3]
    return verbs[0] in ("build", "image") or verbs == ["install", "to-disk"] or \
        verbs == ["install", "to-filesystem"] or verbs == ["install", "kickstart"] or \
        verbs == ["install", "print-configuration"] or verbs == ["container", "lint"]


def test_readme_install_examples(synthetic: SyntheticImages, registry: Registry,
                                 loop_disk: Path, tmp_path: Path) -> None:
    image = f"docker://{registry.host}/os:1"
    rootfs = tmp_path / "rootfs"
    subprocess.run(["umoci", "raw", "unpack", "--image", f"{synthetic.layout}:v1", str(rootfs)],
                   check=True, capture_output=True, timeout=300)
    target = tmp_path / "target"
    target.mkdir()
    fs_img = tmp_path / "fs.raw"
    with open(fs_img, "wb") as f:
        f.truncate(2 << 30)
    subst = {"docker://registry/os:1": image, "/dev/sda": str(loop_disk),
             "oci:DIR:v1": synthetic.ref("v1"), "IMGREF": image, "ROOTFS": str(rootfs),
             "/mnt/target": str(target)}
    cache = tmp_path / "cache"
    first, loopback, dry, to_fs, config, lint = readme(*INSTALL)
    run(forms(first)[0], subst, tmp_path, cache)
    assert subprocess.run(["sgdisk", "-p", str(loop_disk)], capture_output=True,
                          text=True).stdout.count("\n   ") >= 4  # partitioned
    run(forms(loopback)[0], subst, tmp_path, cache)
    assert (tmp_path / "disk.raw").stat().st_size > 0
    # `...`: the arguments of the first example.
    argv = forms(dry)[0]
    argv = [*argv[:-1], *forms(first)[0][3:]]
    plan = run(argv, subst, tmp_path, cache)
    assert "root=UUID=" in plan
    subprocess.run(["mkfs.ext4", "-q", str(fs_img)], check=True)
    with LoopDevice(fs_img) as loop, Mount(loop.path, target):
        run(forms(to_fs)[0], subst, tmp_path, cache)
        assert (target / "ostree/deploy/default").is_dir()
    assert json.loads(run(forms(config)[0], subst, tmp_path, cache))["kargs"] == ["syn.install=1"]
    for argv in forms(lint):
        run(argv, subst, tmp_path, cache)


def test_readme_build_example(registry: Registry, tmp_path: Path) -> None:
    (command,) = readme(*BUILD)
    # The README's comment says which files the command writes.
    text = README.read_text()
    listed = re.search(re.escape(command) + r"\n#\s+(.*)\n", text)
    assert listed, "the build example lost its list of output files"
    run(forms(command)[0], {"docker://registry/os:1": f"docker://{registry.host}/os:1"},
        tmp_path, tmp_path / "cache")
    for path in listed.group(1).split():
        assert (tmp_path / path).is_file(), f"the README says build writes {path}"


def test_readme_image_examples(registry: Registry, tmp_path: Path) -> None:
    image = f"docker://{registry.host}/os:1"
    subst = {"IMGREF": image, "DIR": str(tmp_path / "unpacked")}
    pull, inspect, unpack, list_prune = readme(*IMAGE)
    cache = tmp_path / "cache"
    digest = run(forms(pull)[0], subst, tmp_path, cache).strip()
    assert json.loads(run(forms(inspect)[0], subst, tmp_path, cache))["digest"] == digest
    run(forms(unpack)[0], subst, tmp_path, cache)
    assert (tmp_path / "unpacked/usr/share/syn/variant").read_text() == "v1\n"
    listing, prune = forms(list_prune)
    assert image.removeprefix("docker://") in run(listing, subst, tmp_path, cache)
    run(prune, subst, tmp_path, cache)


def test_readme_kickstart_examples(registry: Registry, tmp_path: Path) -> None:
    ks = tmp_path / "ks.cfg"
    ks.write_text(f"bootc --source-imgref registry:{registry.host}/os:1\n"
                  "rootpw --lock\nclearpart --all --initlabel\nautopart --type=plain\n"
                  "bootloader --append=readme.ks=1\n")
    validate, dry, loopback, url, build = readme(*KICKSTART)
    image = f"docker://{registry.host}/os:1"
    subst = {"ks.cfg": str(ks), "disk.raw": str(tmp_path / "disk.raw"),
             "docker://registry/os:1": image}
    cache = tmp_path / "cache"
    run(forms(validate)[0], subst, tmp_path, cache)
    run(forms(dry)[0], subst, tmp_path, cache)
    run(forms(loopback)[0], subst, tmp_path, cache)
    assert (tmp_path / "disk.raw").stat().st_size > 0
    # The URL form, served from 127.0.0.1. This kickstart names no disk, so the form as written
    # would pick this machine's disks: --dry-run (the whole plan from the fetched kickstart) is
    # the one option added; the install itself is the --via-loopback run above.
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            address = f"http://127.0.0.1:{server.server_address[1]}/ks.cfg"
            plan = run([*forms(url)[0], "--dry-run"], {"http://host/ks.cfg": address},
                       tmp_path, cache)
        finally:
            server.shutdown()
    assert f"Kickstart:    {address}" in plan, plan
    # build --kickstart, as written: ./output/qcow2/disk.qcow2 with the kickstart's karg.
    run(forms(build)[0], subst, tmp_path, cache)
    qcow2 = tmp_path / "output/qcow2/disk.qcow2"
    raw = tmp_path / "built.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(qcow2), str(raw)], check=True,
                   timeout=300)
    with mounted(raw) as mnt:
        entry = next((mnt / "boot/loader/entries").glob("*.conf")).read_text()
    assert "readme.ks=1" in entry, entry


@contextmanager
def mounted(disk: Path) -> Iterator[Path]:
    with ExitStack() as stack:
        loop = stack.enter_context(LoopDevice(disk))
        mnt = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bootc-py-readme-")))
        stack.enter_context(Mount(loop.partition(4), mnt))
        stack.enter_context(Mount(loop.partition(3), mnt / "boot"))
        yield mnt


def test_readme_host_examples_with_sysroot(synthetic: SyntheticImages, registry: Registry,
                                           tmp_path: Path) -> None:
    """In the README's order, on one installed disk: status, an update found, upgraded,
    downloaded then applied, a switch to an OCI layout, a rollback. `--apply` reboots: with
    --sysroot it is refused in one line (tests/vm/test_update_host.py applies it booted)."""
    disk = tmp_path / "disk.raw"
    res = run_cli("install", "to-disk", "--via-loopback", "--source-imgref",
                  f"docker://{registry.host}/os:1", "--cache-dir", str(tmp_path / "cache"),
                  str(disk))
    assert res.returncode == 0, res.stderr
    status, check, upgrade, download, from_downloaded, switch, rollback = readme(*HOST)
    subst = {"TARGET": f"{synthetic.layout}:v1"}
    with mounted(disk) as mnt:
        def host(argv: list[str]) -> str:
            if "--apply" in argv:
                res = run_cli(*argv[1:], "--sysroot", str(mnt))
                assert res.returncode == 2, res.stderr
                assert "--apply reboots the host" in res.stderr
                return ""
            return run([*argv, "--sysroot", str(mnt)], subst, tmp_path, tmp_path / "c")

        for argv in forms(status):
            host(argv)
        registry.push(synthetic.layout, "v2", "os:1")
        for argv in forms(check):
            host(argv)
        for argv in forms(upgrade):
            host(argv)
        registry.push(synthetic.layout, "v1", "os:1")  # another "new" image to download
        host(forms(download)[0])
        host(forms(from_downloaded)[0])
        for argv in forms(switch):
            if "--transport" not in argv:
                argv = [*argv[:-1], f"{registry.host}/os:1"]
            host(argv)
        for argv in forms(rollback):
            host(argv)
        final = json.loads(run_cli("status", "--json", "--sysroot", str(mnt)).stdout)
        assert final["status"]["booted"] is None  # not booted: the offline view
