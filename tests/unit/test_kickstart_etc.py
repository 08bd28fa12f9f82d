"""The kickstart's /etc edits on a tree shaped like a deployment (no host programs)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bootc_py.errors import InstallError
from bootc_py.kickstart import etc
from bootc_py.kickstart.translate import Account, NetworkFile, SystemConfig


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    (tmp_path / "etc").mkdir()
    (tmp_path / "var").mkdir()
    (tmp_path / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                         "old:x:1000:1000::/var/home/old:/bin/sh\n")
    (tmp_path / "etc/group").write_text("root:x:0:\nwheel:x:10:\nold:x:1000:\n")
    (tmp_path / "etc/shadow").write_text("root:*:19000:0:99999:7:::\nold:!:19000::::::\n")
    units = tmp_path / "usr/lib/systemd/system"
    units.mkdir(parents=True)
    (units / "sshd.service").write_text("[Unit]\n[Install]\nWantedBy=multi-user.target\n")
    (units / "static.service").write_text("[Service]\nExecStart=/bin/true\n")
    return tmp_path


@pytest.mark.root  # home directories are chowned to their users
def test_accounts_groups_and_locks(tree: Path) -> None:
    cfg = SystemConfig(
        root=Account("root", "$6$r$hash", crypted=True),
        users=(Account("core", "$6$c$hash", crypted=True, groups=("wheel", "ops")),
               Account("svc", lock=True, uid=1500, homedir="/var/lib/svc")),
        groups=(("ops", 2000),))
    etc.apply_accounts(tree / "etc", tree / "var", cfg)
    passwd = (tree / "etc/passwd").read_text().splitlines()
    assert passwd[2] == "core:x:1001:1001::/var/home/core:/bin/bash"  # next free uid
    assert passwd[3] == "svc:x:1500:1500::/var/lib/svc:/bin/bash"
    group = (tree / "etc/group").read_text()
    assert "wheel:x:10:core\n" in group and "ops:x:2000:core\n" in group
    shadow = {r.split(":")[0]: r.split(":")[1] for r in (tree / "etc/shadow").read_text().split()}
    assert shadow == {"root": "$6$r$hash", "old": "!", "core": "$6$c$hash", "svc": "!"}
    assert (tree / "var/home/core").stat().st_uid == 1001
    assert (tree / "var/lib/svc").stat().st_mode & 0o777 == 0o700


def test_a_missing_supplementary_group_says_what_to_add(tree: Path) -> None:
    cfg = SystemConfig(users=(Account("core", groups=("docker",), uid=os.geteuid(),
                                      gid=os.getegid()),))
    with pytest.raises(InstallError, match="group docker does not exist") as info:
        etc.apply_accounts(tree / "etc", tree / "var", cfg)
    assert info.value.hint == "add `group --name docker` to the kickstart"


def test_settings_services_and_network(tree: Path) -> None:
    cfg = SystemConfig(hostname="h1", keymap="de", lang="de_DE.UTF-8",
                       network=(NetworkFile("50-kickstart-eth0.network", "[Match]\n"),),
                       services_enabled=("sshd", "static"), selinux="enforcing")
    warnings = etc.apply_settings(tree / "etc", tree / "usr", cfg)
    assert (tree / "etc/hostname").read_text() == "h1\n"
    assert (tree / "etc/vconsole.conf").read_text() == "KEYMAP=de\n"
    assert (tree / "etc/locale.conf").read_text() == "LANG=de_DE.UTF-8\n"
    link = tree / "etc/systemd/system/multi-user.target.wants/sshd.service"
    assert str(link.readlink()) == "/usr/lib/systemd/system/sshd.service"
    assert warnings == [
        "network: the image has no systemd-networkd; the .network files in "
        "/etc/systemd/network are not read",
        "services --enabled static: static.service has no [Install] section (static); "
        "nothing to enable",
        "selinux --enforcing: the image has no SELinux; ignored"]
    etc.apply_settings(tree / "etc", tree / "usr", SystemConfig(services_disabled=("sshd",)))
    assert not link.exists()
    with pytest.raises(InstallError, match=r"the image has no unit nope\.service"):
        etc.apply_settings(tree / "etc", tree / "usr", SystemConfig(services_enabled=("nope",)))
    with pytest.raises(InstallError, match="no /usr/share/zoneinfo/Mars/Base"):
        etc.apply_settings(tree / "etc", tree / "usr", SystemConfig(timezone="Mars/Base"))
