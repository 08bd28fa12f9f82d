"""`bootc-py build` of every disk format, `install print-configuration`, `container lint`."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

from synthetic import SyntheticImages, run_cli


def qemu_info(path: Path) -> dict[str, object]:
    out = subprocess.run(["qemu-img", "info", "--output=json", str(path)], check=True,
                         capture_output=True, text=True).stdout
    info: dict[str, object] = json.loads(out)
    return info


def test_build_every_disk_format(synthetic: SyntheticImages, tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = run_cli("build", "--type", "raw,qcow2", "--type", "vmdk", "--type", "vhd",
                  "--disk-size", "5G", "--rootfs", "ext4", "--output", str(out),
                  "--cache-dir", str(synthetic.cache), synthetic.ref("v1"))
    assert res.returncode == 0, res.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["rootfs"] == "ext4"
    assert manifest["bootloaders"] == ["grub-bios", "grub-efi"]
    paths = {a["type"]: a for a in manifest["artifacts"]}
    assert {t: a["path"] for t, a in paths.items()} == {
        "raw": "image/disk.raw", "qcow2": "qcow2/disk.qcow2", "vmdk": "vmdk/disk.vmdk",
        "vhd": "vpc/disk.vhd"}
    for artifact in manifest["artifacts"]:
        path = out / artifact["path"]
        assert path.stat().st_size == artifact["size"]
        with open(path, "rb") as f:  # streamed: the raw image is 5 GiB (sparse)
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        assert digest == artifact["sha256"], artifact["path"]
    assert qemu_info(out / "image/disk.raw")["virtual-size"] == 5 << 30
    assert qemu_info(out / "qcow2/disk.qcow2")["format"] == "qcow2"
    assert qemu_info(out / "vmdk/disk.vmdk")["format"] == "vmdk"
    # A fixed VHD (what Azure takes) is the raw disk plus a 512-byte footer.
    vhd = out / "vpc/disk.vhd"
    assert vhd.stat().st_size == (5 << 30) + 512
    with open(vhd, "rb") as f:
        f.seek(-512, 2)
        assert f.read(8) == b"conectix"
    # Sparse: the raw disk's allocated blocks are far below its size.
    assert (out / "image/disk.raw").stat().st_blocks * 512 < (5 << 30) // 4
    # The same bytes in every format.
    compare = subprocess.run(["qemu-img", "compare", "-q", str(out / "image/disk.raw"),
                              str(out / "qcow2/disk.qcow2")])
    assert compare.returncode == 0


def test_build_rejects_unknown_type(synthetic: SyntheticImages, tmp_path: Path) -> None:
    res = run_cli("build", "--type", "ova", "--output", str(tmp_path / "o"), synthetic.ref("v1"))
    assert res.returncode == 2
    assert "unknown image type 'ova'" in res.stderr
    assert not (tmp_path / "o" / "image").exists()


def test_print_configuration(synthetic: SyntheticImages) -> None:
    res = run_cli("install", "print-configuration", "--cache-dir", str(synthetic.cache),
                  synthetic.ref("v1"))
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == {"kargs": ["syn.install=1"], "kargs.d": ["syn.kargsd=1"]}


def test_container_lint_on_image_refs(synthetic: SyntheticImages) -> None:
    good = run_cli("container", "lint", "--cache-dir", str(synthetic.cache), synthetic.ref("v1"))
    assert good.returncode == 0, good.stdout + good.stderr
    # The synthetic image has no bootc-py: a warning, not an error.
    assert good.stdout.startswith("warning: bootc-py is not in the image")
    bad = run_cli("container", "lint", "--cache-dir", str(synthetic.cache),
                  synthetic.ref("twokernels"))
    assert bad.returncode == 1
    assert "error: 2 kernels under /usr/lib/modules" in bad.stdout
    none = run_cli("container", "lint", "--cache-dir", str(synthetic.cache),
                   synthetic.ref("nokernel"))
    assert none.returncode == 1
    assert "error: no kernel at /usr/lib/modules/$KVER/vmlinuz" in none.stdout
