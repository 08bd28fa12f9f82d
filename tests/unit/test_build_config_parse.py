"""bootc-image-builder's config.toml: what is read, what is refused (one line each, naming the
key), and the kickstart it becomes (golden)."""

from __future__ import annotations

import pytest

from bootc_py.artifacts.build_config import ConfigProblems, parse, render_kickstart
from bootc_py.errors import ConfigError

FULL = """\
[[customizations.user]]
name = "alice"
password = "bob"
key = "ssh-ed25519 AAAAC3Nza alice@example.com"
groups = ["wheel", "admins"]

[[customizations.user]]
name = "svc"
password = "$6$salt$hashed"
shell = "/usr/sbin/nologin"
uid = 990

[customizations.kernel]
append = "mitigations=auto,nosmt console=ttyS0"

[[customizations.filesystem]]
mountpoint = "/"
minsize = "10 GiB"

[[customizations.filesystem]]
mountpoint = "/var/data"
minsize = "20 GB"

[customizations.installer]
unattended = true

[customizations.iso]
volume_id = "MY-OS"
application_id = "my os"
publisher = "me"
"""


def test_the_documented_example_as_a_kickstart() -> None:
    cfg = parse(FULL, "config.toml")
    assert cfg.kargs == ("mitigations=auto,nosmt", "console=ttyS0")
    assert (cfg.volume_id, cfg.application_id, cfg.publisher) == ("MY-OS", "my os", "me")
    assert cfg.unattended is True and cfg.warnings == ()
    assert render_kickstart(cfg, root_fstype="ext4") == """\
# from config.toml (bootc-py build --config)
reqpart --add-boot
part / --size 10240 --grow --fstype ext4
part /var/data --size 19074 --fstype ext4
user --name alice --groups wheel,admins --password bob --plaintext
sshkey --username alice 'ssh-ed25519 AAAAC3Nza alice@example.com'
user --name svc --password '$6$salt$hashed' --iscrypted --shell /usr/sbin/nologin --uid 990
bootloader --append 'mitigations=auto,nosmt console=ttyS0'
"""


def test_json_is_read_too_and_a_kernel_name_is_only_a_warning() -> None:
    cfg = parse('{"customizations": {"kernel": {"name": "kernel-debug", "append": "quiet"}}}',
                "config.json")
    assert cfg.kargs == ("quiet",) and not cfg.shapes_layout and cfg.users == ()
    assert cfg.warnings == ("config.json: customizations.kernel.name is not applied: a "
                            "bootable image carries its own kernel",)


def test_disk_partitions_plain_lvm_btrfs() -> None:
    cfg = parse("""\
[customizations.disk]
minsize = "30 GiB"
[[customizations.disk.partitions]]
type = "plain"
mountpoint = "/var/log"
fs_type = "xfs"
minsize = "1 GiB"
label = "logs"
[[customizations.disk.partitions]]
type = "lvm"
name = "mainvg"
minsize = "20 GiB"
[[customizations.disk.partitions.logical_volumes]]
name = "rootlv"
mountpoint = "/"
fs_type = "ext4"
minsize = "2 GiB"
[[customizations.disk.partitions.logical_volumes]]
fs_type = "swap"
minsize = "512 MiB"
[[customizations.disk.partitions]]
type = "btrfs"
minsize = "4 GiB"
[[customizations.disk.partitions.subvolumes]]
name = "srv"
mountpoint = "/var/srv"
""", "disk.toml")
    assert cfg.disk_minsize == 30 << 30
    assert render_kickstart(cfg).splitlines()[1:] == [
        "reqpart --add-boot",
        "part /var/log --size 1024 --fstype xfs --label logs",
        "part pv.02 --size 20480 --grow",
        "volgroup mainvg pv.02",
        "logvol / --vgname mainvg --name rootlv --size 2048 --fstype ext4",
        "logvol swap --vgname mainvg --name lv2 --size 512 --fstype swap",
        "part btrfs.03 --size 4096 --grow",
        "btrfs none --label=bootc-btrfs3 btrfs.03",
        "btrfs /var/srv --subvol --name=srv LABEL=bootc-btrfs3",
    ]


def test_every_problem_is_one_line_naming_its_key() -> None:
    with pytest.raises(ConfigProblems) as err:
        parse("""\
[customizations]
hostname = "x"
[[customizations.user]]
nmae = "typo"
[[customizations.user]]
name = "Bad Name"
groups = "wheel"
[customizations.kernel]
append = "a=\\"b"
[[customizations.filesystem]]
mountpoint = "/opt"
minsize = "lots"
[customizations.disk]
partitiontable = "dos"
[[customizations.disk.partitions]]
type = "zfs"
[customizations.iso]
volume_id = "lower case"
""", "config.toml")
    assert list(err.value.problems) == [
        "config.toml: customizations.hostname: unknown key (known: user, kernel, filesystem, "
        "disk, installer, iso)",
        "config.toml: customizations.user[0].nmae: unknown key (known: name, password, key, "
        "groups, home, shell, uid, gid, description)",
        "config.toml: customizations.user[0].name: is required",
        "config.toml: customizations.user[1].groups: must be a list of group names",
        "config.toml: customizations.user[1].name: 'Bad Name' is not a valid user name",
        "config.toml: customizations.kernel.append: No closing quotation",
        "config.toml: customizations.filesystem[0].mountpoint: '/opt' cannot be its own "
        "filesystem in a bootable container image: use /, /boot, /var or a path below /var",
        "config.toml: customizations.filesystem[0].minsize: 'lots' is not a size (bytes, or "
        "e.g. \"10 GiB\", \"512 MiB\", \"20 GB\")",
        "config.toml: customizations.disk.partitiontable: 'dos' is not supported: bootc-py "
        "writes GPT (BIOS and UEFI boot from it)",
        "config.toml: customizations.disk.partitions[0].type: 'zfs' is not one of plain, lvm, "
        "btrfs",
        "config.toml: customizations.disk: cannot be combined with customizations.filesystem "
        "(as in bootc-image-builder): use one",
        "config.toml: customizations.iso.volume_id: 'lower case' is not an ISO 9660 volume id "
        "(up to 32 of A-Z, 0-9, _ and -)",
    ]


@pytest.mark.parametrize(("text", "message"), [
    ("[customizations\n", "config.toml: not valid TOML: "),
    ("{\"customizations\": ", "config.toml: not valid JSON: "),
])
def test_a_file_that_does_not_parse_is_one_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse(text, "config.toml")
    assert err.value.message.startswith(message) and "\n" not in err.value.message


def test_users_join_a_kickstart_but_two_layouts_are_refused() -> None:
    users = parse('[[customizations.user]]\nname = "core"\n', "c.toml")
    base = "zerombr\nclearpart --all\nautopart --type=plain\nreboot\n"
    assert render_kickstart(users, base=base) == base + (
        "# from c.toml (bootc-py build --config)\nuser --name core\n")
    layout = parse('[[customizations.filesystem]]\nmountpoint = "/var"\nminsize = 1000000000\n',
                   "c.toml")
    with pytest.raises(ConfigError, match="the filesystem/disk customizations and the "
                                          "kickstart both set the disk layout"):
        render_kickstart(layout, base=base)
