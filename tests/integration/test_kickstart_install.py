"""install kickstart --via-loopback: a plain kickstart layout, /etc config and scripts applied
to a real loop device, then the disk inspected."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from synthetic import SyntheticImages, base_tree, build_image, run_cli

from bootc_py.disk.loop import LoopDevice
from bootc_py.disk.mount import Mount
from bootc_py.disk.volumes import device_mapper_available

pytestmark = pytest.mark.root
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKickstartTestKey core@bootc-py"


def shell_tree(root: Path) -> None:
    """Just enough for chrooted scripts: the host's dash (and its libc) as /bin/sh, a
    systemd unit to enable, a time zone, and the mount points a chroot needs."""
    for d in ("usr/bin", "usr/lib/x86_64-linux-gnu", "usr/lib64", "proc", "sys", "dev",
              "usr/lib/systemd/system", "usr/share/zoneinfo/Europe", "etc"):
        (root / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2("/usr/bin/dash", root / "usr/bin/dash")
    (root / "usr/bin/sh").symlink_to("dash")
    shutil.copy2("/lib/x86_64-linux-gnu/libc.so.6", root / "usr/lib/x86_64-linux-gnu/")
    shutil.copy2("/lib64/ld-linux-x86-64.so.2", root / "usr/lib64/")
    for link, target in (("bin", "usr/bin"), ("lib64", "usr/lib64"), ("lib", "usr/lib")):
        (root / link).symlink_to(target)
    (root / "usr/lib/systemd/system/chronyd.service").write_text(
        "[Service]\nExecStart=/bin/true\n\n[Install]\nWantedBy=multi-user.target\n")
    (root / "usr/share/zoneinfo/Europe/Berlin").write_bytes(b"TZif2 fake")
    (root / "etc/group").write_text("root:x:0:\nwheel:x:10:\n")
    (root / "etc/shadow").write_text("root:*:19000:0:99999:7:::\n")


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> str:
    work = tmp_path_factory.mktemp("ks-image")
    return build_image(work / "oci", "ks", [base_tree, shell_tree], work=work / "build")


KS = """\
bootc --source-imgref {image} --target-imgref 127.0.0.1:5000/syn:1
zerombr
clearpart --all --initlabel
reqpart --add-boot
part / --size 1200 --fstype xfs
part /var --size 300 --grow --fstype ext4 --fsoptions defaults,noatime
part swap --size 64
rootpw --plaintext hunter2
group --name ops --gid 2000
user --name core --groups wheel,ops --uid 1001 --password $6$s$h --iscrypted
sshkey --username core "{key}"
network --device eth0 --bootproto static --ip 10.0.2.15 --netmask 255.255.255.0 --gateway 10.0.2.2
network --hostname ks-host
timezone Europe/Berlin
services --enabled chronyd
bootloader --append "console=ttyS0,115200n8" --timeout 7
%pre
echo pre-ran > {pre_marker}
%end
%post --erroronfail --log /var/log/ks-post.log
echo in-chroot > /etc/ks-post-marker
echo shared-var > /var/ks-var-marker
echo logged
%end
%post --nochroot
cat /mnt/sysroot/etc/hostname > {nochroot_marker}
%end
"""


@pytest.fixture(scope="module")
def installed(image: str, synthetic: SyntheticImages,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    work = tmp_path_factory.mktemp("ks-install")
    ks = work / "ks.cfg"
    ks.write_text(KS.format(image=image, key=KEY, pre_marker=work / "pre",
                            nochroot_marker=work / "nochroot"))
    disk = work / "disk.raw"
    res = run_cli("install", "kickstart", "--via-loopback", str(disk), "--disk-size", "4G",
                  "--cache-dir", str(synthetic.cache), str(ks))
    assert res.returncode == 0, res.stderr
    assert "Installed oci:" in res.stdout and "6 partitions" in res.stdout
    yield disk, work


def _deployment(mnt: Path) -> Path:
    found = list((mnt / "ostree/deploy/default/deploy").glob("*.0"))
    assert len(found) == 1
    return found[0]


def test_layout_etc_and_scripts(installed: tuple[Path, Path]) -> None:
    disk, work = installed
    assert (work / "pre").read_text() == "pre-ran\n"
    assert (work / "nochroot").read_text() == "ks-host\n"
    with ExitStack() as stack:
        loop = stack.enter_context(LoopDevice(disk))
        fstypes = [subprocess.run(["blkid", "-p", "-s", "TYPE", "-o", "value",
                                   str(loop.partition(n))], capture_output=True, text=True,
                                  check=False).stdout.strip() for n in range(1, 7)]
        assert fstypes == ["", "vfat", "ext4", "xfs", "ext4", "swap"]
        mnt = work / "mnt"
        stack.enter_context(Mount(loop.partition(4), mnt))
        dep = _deployment(mnt)
        etc = dep / "etc"
        var = mnt / "ostree/deploy/default/var"
        fstab = (etc / "fstab").read_text()
        assert " /var ext4 defaults,noatime 0 2" in fstab and " none swap " in fstab
        passwd = (etc / "passwd").read_text()
        assert "core:x:1001:1001::/var/home/core:/bin/bash" in passwd
        group = (etc / "group").read_text()
        assert "wheel:x:10:core" in group and "ops:x:2000:core" in group
        shadow = dict(line.split(":", 2)[:2] for line in (etc / "shadow").read_text().split())
        assert shadow["core"] == "$6$s$h" and shadow["root"].startswith("$6$")
        assert (etc / "hostname").read_text() == "ks-host\n"
        assert str((etc / "localtime").readlink()) == "../usr/share/zoneinfo/Europe/Berlin"
        network = (etc / "systemd/network/50-kickstart-eth0.network").read_text()
        assert "Address=10.0.2.15/24" in network and "Gateway=10.0.2.2" in network
        assert str((etc / "systemd/system/multi-user.target.wants/chronyd.service").readlink()) \
            == "/usr/lib/systemd/system/chronyd.service"
        assert (etc / "ks-post-marker").read_text() == "in-chroot\n"
        # The chroot's /var is the stateroot's; --log lands inside the target.
        assert not (dep / "var/ks-var-marker").exists()
        stack.enter_context(Mount(loop.partition(3), mnt / "boot"))
        entries = list((mnt / "boot/loader/entries").glob("*.conf"))
        assert len(entries) == 1 and "console=ttyS0,115200n8" in entries[0].read_text()
        # bootloader --timeout: the menu waits 7 s (the image's own default is 3).
        assert "set timeout=7\n" in (mnt / "boot/grub/grub.cfg").read_text()
        # /var is its own partition: what the install wrote there is on it, not under it.
        assert not (var / "home/core").exists() and not (var / "ks-var-marker").exists()
        stack.enter_context(Mount(loop.partition(5), var))
        keys = var / "home/core/.ssh/authorized_keys"
        assert keys.read_text() == KEY + "\n" and keys.stat().st_uid == 1001
        assert (var / "ks-var-marker").read_text() == "shared-var\n"
        assert (var / "log/ks-post.log").read_text() == "logged\n"
        assert (var / "cache/app/seed").read_text() == "seeded from the image\n"


def test_erroronfail_fails_the_install_with_its_output(
        image: str, synthetic: SyntheticImages, tmp_path: Path) -> None:
    ks = tmp_path / "ks.cfg"
    ks.write_text(f"bootc --source-imgref {image}\nreqpart --add-boot\npart / --grow\n"
                  "%post --erroronfail\necho broken-config >&2\nexit 3\n%end\n"
                  f"%onerror\ntouch {tmp_path}/onerror-ran\n%end\n")
    disk = tmp_path / "disk.raw"
    res = run_cli("install", "kickstart", "--via-loopback", str(disk), "--disk-size", "3G",
                  "--cache-dir", str(synthetic.cache), str(ks))
    assert res.returncode == 1
    assert "ks.cfg:4 failed (exit 3, --erroronfail): broken-config" in res.stderr
    assert (tmp_path / "onerror-ran").exists()
    assert not disk.exists()  # the image file it created is removed


def test_pre_failure_touches_no_disk(image: str, tmp_path: Path) -> None:
    ks = tmp_path / "ks.cfg"
    ks.write_text(f"bootc --source-imgref {image}\nreqpart --add-boot\npart / --grow\n"
                  "%pre --erroronfail\nexit 1\n%end\n")
    disk = tmp_path / "disk.raw"
    res = run_cli("install", "kickstart", "--via-loopback", str(disk), "--disk-size", "3G",
                  str(ks))
    assert res.returncode == 1 and "%pre at" in res.stderr
    assert not disk.exists()



LVM_KS = """\
bootc --source-imgref {image}
clearpart --all --initlabel
reqpart --add-boot
part pv.01 --size 1800 --grow
volgroup {vg} pv.01
logvol / --vgname {vg} --name root --size 1200 --fstype xfs
logvol /var/log --vgname {vg} --name log --size 100 --fstype ext4
logvol swap --vgname {vg} --name swap --size 32
user --name core
%post
echo lvm > /etc/ks-post-marker
%end
"""


def test_lvm_layout_is_planned_against_the_disk(image: str, tmp_path: Path) -> None:
    """What runs here of LVM: the plan against a real image file's size (this kernel has no
    device-mapper, so the volumes themselves are made and booted in the VM test
    tests/vm/test_kickstart_boot.py::test_lvm_kickstart_via_loopback_in_a_guest_boots).
    """
    ks = tmp_path / "ks.cfg"
    ks.write_text(LVM_KS.format(image=image, vg="ksvg"))
    disk = tmp_path / "disk.raw"
    disk.write_bytes(b"")
    os.truncate(disk, 4 << 30)
    res = run_cli("install", "kickstart", "--dry-run", "--via-loopback", str(disk), str(ks))
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "Partition table: GPT on 4 GiB" in out and "Volume group ksvg:" in out
    lvs = [line.split() for line in out.splitlines() if line.strip().startswith("/dev/ksvg/")]
    assert [lv[0] for lv in lvs] == ["/dev/ksvg/root", "/dev/ksvg/log", "/dev/ksvg/swap"]
    assert "rd.lvm.lv=ksvg/root" in out
    assert disk.stat().st_blocks == 0  # nothing written


BTRFS_KS = """\
bootc --source-imgref {image}
clearpart --all --initlabel
reqpart --add-boot
part btrfs.01 --size 1600 --grow
btrfs none --label=ksvol btrfs.01
btrfs / --subvol --name=root LABEL=ksvol
btrfs /var --subvol --name=var ksvol
bootloader --sdboot --timeout 4
"""


def test_lvm_without_device_mapper_is_refused_before_any_write(image: str,
                                                               tmp_path: Path) -> None:
    if device_mapper_available():
        pytest.skip("the kernel has device-mapper: the LVM install test covers it")
    ks = tmp_path / "ks.cfg"
    ks.write_text(LVM_KS.format(image=image, vg="ksvgx").replace(
        "%post", f"%pre\ntouch {tmp_path}/pre-ran\n%end\n%post"))
    disk = tmp_path / "disk.raw"
    res = run_cli("install", "kickstart", "--via-loopback", str(disk), "--disk-size", "4G",
                  str(ks))
    assert res.returncode == 1
    assert "error: the kickstart's layout uses LVM, but this kernel has no device-mapper" \
        in res.stderr
    assert not disk.exists() and not (tmp_path / "pre-ran").exists()


def test_btrfs_subvolume_layout(image: str, synthetic: SyntheticImages,
                                tmp_path: Path) -> None:
    ks = tmp_path / "ks.cfg"
    ks.write_text(BTRFS_KS.format(image=image))
    disk = tmp_path / "disk.raw"
    res = run_cli("install", "kickstart", "--via-loopback", str(disk), "--disk-size", "4G",
                  "--cache-dir", str(synthetic.cache), str(ks))
    assert res.returncode == 0, res.stderr
    with ExitStack() as stack:
        loop = stack.enter_context(LoopDevice(disk))
        top = tmp_path / "top"
        stack.enter_context(Mount(loop.partition(4), top, fstype="btrfs"))
        subs = subprocess.run(["btrfs", "subvolume", "list", str(top)], capture_output=True,
                              text=True, check=True).stdout.split()
        assert [s for s in subs if s in ("root", "var")] == ["root", "var"]
        # The sysroot is inside the root subvolume, not at the top level.
        assert not (top / "ostree").exists()
        dep = _deployment(top / "root")
        assert " /var btrfs subvol=var 0 0" in (dep / "etc/fstab").read_text()
        stack.enter_context(Mount(loop.partition(3), tmp_path / "boot"))
        entry = next((tmp_path / "boot/loader/entries").glob("*.conf")).read_text()
        assert "rootflags=subvol=root" in entry
        # bootloader --sdboot --timeout 4: systemd-boot's loader.conf on the ESP says so.
        loader = subprocess.run(["mtype", "-i", str(loop.partition(2)),
                                 "::/loader/loader.conf"], capture_output=True, text=True,
                                check=True, env={**os.environ, "MTOOLS_SKIP_CHECK": "1"})
        assert loader.stdout.splitlines()[0] == "timeout 4"


BUILD_KS = """\
bootc --source-imgref registry:127.0.0.1:5000/replaced-by-build:1
zerombr
clearpart --all --initlabel
reqpart --add-boot
part / --size 1500 --grow --fstype ext4
group --name ops --gid 2000
user --name core --groups wheel,ops --uid 1001
sshkey --username core "{key}"
bootloader --append "console=ttyS0,115200n8 ks.build=1" --timeout 2
%post --erroronfail
echo built > /etc/ks-build-marker
%end
"""


def test_build_with_a_kickstart_shapes_the_disk_image(
        image: str, synthetic: SyntheticImages, tmp_path: Path) -> None:
    ks = tmp_path / "ks.cfg"
    ks.write_text(BUILD_KS.format(key=KEY))
    out = tmp_path / "out"
    # The README's example is `build --type qcow2 --kickstart ks.cfg IMAGE`: run as written.
    res = run_cli("build", "--type", "qcow2", "--output", str(out), "--disk-size", "4G",
                  "--karg", "from.cli=1", "--kickstart", str(ks), "--cache-dir",
                  str(synthetic.cache), image)
    assert res.returncode == 0, res.stderr
    assert "the image is " + image in res.stderr  # build's IMGREF wins over the payload
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["image"] == image and manifest["rootfs"] == "ext4"
    raw = tmp_path / "disk.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(out / "qcow2/disk.qcow2"), str(raw)],
                   check=True, timeout=300)
    with ExitStack() as stack:
        loop = stack.enter_context(LoopDevice(raw))
        mnt = tmp_path / "mnt"
        stack.enter_context(Mount(loop.partition(4), mnt))
        etc = _deployment(mnt) / "etc"
        assert "core:x:1001:1001::/var/home/core:/bin/bash" in (etc / "passwd").read_text()
        assert "ops:x:2000:core" in (etc / "group").read_text()
        assert (etc / "ks-build-marker").read_text() == "built\n"
        keys = mnt / "ostree/deploy/default/var/home/core/.ssh/authorized_keys"
        assert keys.read_text() == KEY + "\n"
        stack.enter_context(Mount(loop.partition(3), mnt / "boot"))
        entry = next((mnt / "boot/loader/entries").glob("*.conf")).read_text()
        assert "console=ttyS0,115200n8 ks.build=1 from.cli=1" in entry
        assert "set timeout=2\n" in (mnt / "boot/grub/grub.cfg").read_text()


ATTACHED_KS = """\
bootc --source-imgref {image}
zerombr
clearpart --all --initlabel
autopart --type=plain
%pre
touch {marker}
%end
"""


def test_an_image_file_still_attached_is_refused_before_pre_and_the_pull(
        image: str, tmp_path: Path) -> None:
    # Issue 11's silent corruption, through the kickstart path: a file an earlier (killed)
    # install left attached must not be reformatted through a second loop device.
    disk = tmp_path / "disk.raw"
    disk.write_bytes(b"")
    os.truncate(disk, 4 << 30)
    marker = tmp_path / "pre-ran"
    ks = tmp_path / "ks.cfg"
    ks.write_text(ATTACHED_KS.format(image=image, marker=marker))
    cache = tmp_path / "cache"
    with LoopDevice(disk) as loop:
        res = run_cli("install", "kickstart", "--via-loopback", str(disk), "--cache-dir",
                      str(cache), str(ks))
        assert res.returncode != 0
        errors = [x for x in res.stderr.splitlines() if x.startswith("error: ")]
        assert errors == [f"error: {disk} is already attached to the loop device {loop.path}"]
    assert not marker.exists()  # %pre did not run
    assert not any(cache.rglob("sha256*"))  # nothing was pulled
    assert disk.stat().st_blocks == 0  # nothing was written


def test_clearpart_list_erases_a_disk_only_when_it_lists_every_partition(
        image: str, tmp_path: Path) -> None:
    """clearpart --list named partitions, which the translation took for disks ("several
    disks"); a disk holding a partition the list leaves out is refused before any write."""
    disk = tmp_path / "disk.raw"
    disk.write_bytes(b"")
    os.truncate(disk, 4 << 30)
    subprocess.run(["sfdisk", "--quiet", str(disk)], check=True, text=True,
                   input="label: gpt\n,100M\n,100M\n,100M\n")
    before = subprocess.run(["sfdisk", "--dump", str(disk)], check=True, capture_output=True,
                            text=True).stdout
    ks = tmp_path / "ks.cfg"
    body = f"bootc --source-imgref {image}\nreqpart --add-boot\npart / --grow --fstype xfs\n"
    ks.write_text(f"clearpart --list=vda1,vda2\n{body}")
    res = run_cli("install", "kickstart", "--via-loopback", str(disk), str(ks))
    assert res.returncode == 2
    assert f"error: clearpart --list names /dev/vda1, /dev/vda2, but {disk} also holds " \
        "partition 3: bootc-py writes a whole new partition table and would erase it" \
        in res.stderr, res.stderr
    assert subprocess.run(["sfdisk", "--dump", str(disk)], check=True, capture_output=True,
                          text=True).stdout == before
    ks.write_text(f"clearpart --list=vda1,vda2,vda3\n{body}")
    res = run_cli("install", "kickstart", "--via-loopback", str(disk), str(ks))
    assert res.returncode == 0, res.stderr
    with LoopDevice(disk, read_only=True) as loop:
        subprocess.run(["xfs_repair", "-n", str(loop.partition(4))], check=True,
                       capture_output=True)
