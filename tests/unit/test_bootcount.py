"""Boot counting: the generated grub.cfg fallback logic, BLS +N entry names and blessing."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from test_bootloader_config import make_boot

from bootc_py.bootloader import bootcount, grub, systemd_boot
from bootc_py.bootloader.bls import read_entries
from bootc_py.errors import BootloaderError

DATA = Path(__file__).parent / "data/bootcount"


def test_grub_cfg_counts_down_then_falls_back(tmp_path: Path) -> None:
    boot = make_boot(tmp_path, {1: "a" * 8, 2: "b" * 8})
    cfg = grub.render_grub_cfg(read_entries(boot), "1234-ABCD")
    assert cfg == (DATA / "grub.cfg").read_text()
    # The logic, in the order GRUB reads it: load the env, count, save, then the entries.
    assert cfg.index("load_env -f /grub/grubenv") < cfg.index("save_env -f /grub/grubenv")
    assert cfg.index("save_env") < cfg.index("menuentry")
    assert '[ "${boot_counter}" = "3" ]; then\n        set boot_counter=2' in cfg
    assert '[ "${boot_counter}" = "1" ]; then\n        set boot_counter=0' in cfg
    zero = cfg.index('if [ "${boot_counter}" = "0" -o "${boot_counter}" = "-1" ]')
    assert cfg.index("set default=1", zero) < cfg.index("set boot_counter=-1", zero)


def test_grub_cfg_without_a_fallback_entry_never_counts(tmp_path: Path) -> None:
    boot = make_boot(tmp_path, {1: "a" * 8})
    cfg = grub.render_grub_cfg(read_entries(boot), "u")
    assert "boot_counter" not in cfg and "set default=1" not in cfg


def test_grub_cfg_on_a_root_boot_dir_uses_its_path(tmp_path: Path) -> None:
    boot = make_boot(tmp_path, {1: "a" * 8, 2: "b" * 8})
    cfg = grub.render_grub_cfg(read_entries(boot), "u", path_prefix="/boot")
    assert "save_env -f /boot/grub/grubenv boot_counter" in cfg


@pytest.mark.host_tools
def test_grub_script_check_accepts_the_generated_cfg(tmp_path: Path) -> None:
    boot = make_boot(tmp_path, {1: "a" * 8, 2: "b" * 8})
    path = tmp_path / "grub.cfg"
    path.write_text(grub.render_grub_cfg(read_entries(boot), "1234-ABCD"))
    res = subprocess.run(["grub-script-check", str(path)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    path.write_text(path.read_text().replace("    fi\n", "", 1))  # the check can fail
    assert subprocess.run(["grub-script-check", str(path)], capture_output=True).returncode


def test_parse_grubenv() -> None:
    text = "# GRUB Environment Block\nboot_counter=2\nboot_success=0\n" + "#" * 980
    assert bootcount.parse_grubenv(text) == {"boot_counter": "2", "boot_success": "0"}


@pytest.mark.parametrize(("name", "base", "left", "done"), [
    ("ostree-2-default.conf", "ostree-2-default.conf", None, 0),
    ("ostree-2-default+3.conf", "ostree-2-default.conf", 3, 0),
    ("ostree-2-default+1-2.conf", "ostree-2-default.conf", 1, 2),
    ("ostree-2-default+0-3.conf", "ostree-2-default.conf", 0, 3),
])
def test_parse_counted_names(name: str, base: str, left: int | None, done: int) -> None:
    counted = bootcount.parse_counted(name)
    assert (counted.base, counted.left, counted.done) == (base, left, done)
    assert counted.name == name
    assert counted.bad == (left == 0)


def test_tries_are_bounded() -> None:
    with pytest.raises(BootloaderError, match="between 1 and 9"):
        bootcount.check_tries(0)
    with pytest.raises(BootloaderError):
        bootcount.check_tries(10)


def _esp(tmp_path: Path) -> systemd_boot.DirEsp:
    (tmp_path / "esp").mkdir()
    return systemd_boot.DirEsp(tmp_path / "esp")


def test_sync_arms_the_new_default_and_keeps_systemd_boots_renames(tmp_path: Path) -> None:
    esp = _esp(tmp_path)
    boot = make_boot(tmp_path / "one", {1: "a" * 8})
    systemd_boot.sync(esp, boot, read_entries(boot))
    assert esp.listdir("loader/entries") == ["ostree-1-default.conf"]
    # An upgrade: the new default gets 3 tries.
    boot2 = make_boot(tmp_path / "two", {1: "a" * 8, 2: "b" * 8})
    entries = read_entries(boot2)
    systemd_boot.sync(esp, boot2, entries, arm=entries[0], tries=3)
    assert esp.listdir("loader/entries") == ["ostree-1-default.conf", "ostree-2-default+3.conf"]
    # systemd-boot counts a try by renaming; a later sync keeps its name and counter.
    entries_dir = tmp_path / "esp/loader/entries"
    (entries_dir / "ostree-2-default+3.conf").rename(entries_dir / "ostree-2-default+2-1.conf")
    systemd_boot.sync(esp, boot2, entries)
    assert esp.listdir("loader/entries") == ["ostree-1-default.conf",
                                             "ostree-2-default+2-1.conf"]


def test_a_different_entry_under_the_same_name_is_not_counted(tmp_path: Path) -> None:
    esp = _esp(tmp_path)
    boot = make_boot(tmp_path / "one", {1: "a" * 8, 2: "b" * 8})
    entries = read_entries(boot)
    systemd_boot.sync(esp, boot, entries, arm=entries[0], tries=2)
    # Rollback made permanent: ostree rewrites ostree-2-default.conf for another deployment.
    boot2 = make_boot(tmp_path / "two", {1: "b" * 8, 2: "a" * 8})
    systemd_boot.sync(esp, boot2, read_entries(boot2))
    assert esp.listdir("loader/entries") == ["ostree-1-default.conf", "ostree-2-default.conf"]


def test_bless_renames_the_booted_entry(tmp_path: Path) -> None:
    esp = _esp(tmp_path)
    boot = make_boot(tmp_path / "one", {1: "a" * 8, 2: "b" * 8})
    entries = read_entries(boot)
    systemd_boot.sync(esp, boot, entries, arm=entries[0], tries=3)
    before = esp.read("loader/entries/ostree-2-default+3.conf")
    assert bootcount.bless_esp(esp, "/ostree/boot.1/default/aaaaaaaa/1") is None  # uncounted
    assert bootcount.bless_esp(esp, "/ostree/boot.1/default/bbbbbbbb/0") == \
        "ostree-2-default.conf"
    assert esp.listdir("loader/entries") == ["ostree-1-default.conf", "ostree-2-default.conf"]
    assert esp.read("loader/entries/ostree-2-default.conf") == before


def _sysroot_with(tmp_path: Path, links: dict[str, str]) -> Path:
    """ostree's /ostree/boot.1/<stateroot>/<bootcsum>/<serial> -> deploy/<csum>.<serial>."""
    sysroot = tmp_path / "sysroot"
    for boot_path, csum in links.items():
        deploy = sysroot / "ostree/deploy/default/deploy" / f"{csum}.0"
        deploy.mkdir(parents=True, exist_ok=True)
        link = sysroot / boot_path.lstrip("/")
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(deploy)
    return sysroot


def test_request_arms_only_the_requested_default(tmp_path: Path) -> None:
    boot = make_boot(tmp_path, {1: "a" * 8, 2: "b" * 8})
    new, old = "1" * 64, "2" * 64
    sysroot = _sysroot_with(tmp_path, {"/ostree/boot.1/default/bbbbbbbb/0": new,
                                       "/ostree/boot.1/default/aaaaaaaa/1": old})
    entries = read_entries(boot)
    assert bootcount.entry_to_arm(None, entries, sysroot) is None
    bootcount.request_tries(boot, new, 3)
    request = bootcount.read_request(boot)
    assert request == bootcount.ArmRequest(new, 3)
    assert bootcount.entry_to_arm(request, entries, sysroot) == entries[0]
    assert bootcount.entry_to_arm(bootcount.ArmRequest(old, 3), entries, sysroot) is None
    bootcount.clear_request(boot)
    assert bootcount.read_request(boot) is None


def test_corrupt_request_is_dropped(tmp_path: Path) -> None:
    (tmp_path / "bootc-py").mkdir()
    (tmp_path / bootcount.REQUEST).write_text('{"tries": 99, "deployment": "x"}')
    assert bootcount.read_request(tmp_path) is None
    assert not (tmp_path / bootcount.REQUEST).exists()


@pytest.mark.parametrize(("env", "default", "disarm"), [
    ({"boot_counter": "2", bootcount.ARMED: "n"}, "n", False),   # still the armed default
    ({"boot_counter": "2", bootcount.ARMED: "n"}, "o", True),    # a rollback moved it
    ({"boot_counter": "0", bootcount.ARMED: "n"}, None, True),   # default not a deployment
    ({"boot_counter": "-1", bootcount.ARMED: "n"}, "o", False),  # fell back: health's job
    ({"boot_counter": "2"}, "o", False),                         # armed before the marker
    ({"boot_success": "1"}, "o", False),                         # nothing counted
])
def test_grub_counter_stops_when_another_deployment_is_the_default(
        env: dict[str, str], default: str | None, disarm: bool) -> None:
    assert bootcount.grub_disarm_needed(env, default) is disarm


def test_last_systemd_boot_try_is_still_counted_and_the_next_boot_fell_back(
        tmp_path: Path) -> None:
    from bootc_py.update.health import BootState, esp_boot_state

    esp = _esp(tmp_path)
    boot = make_boot(tmp_path / "one", {1: "a" * 8, 2: "b" * 8})
    entries = read_entries(boot)
    systemd_boot.sync(esp, boot, entries, arm=entries[0], tries=2)
    new, old = "/ostree/boot.1/default/bbbbbbbb/0", "/ostree/boot.1/default/aaaaaaaa/1"
    entries_dir = tmp_path / "esp/loader/entries"
    (entries_dir / "ostree-2-default+2.conf").rename(entries_dir / "ostree-2-default+1-1.conf")
    assert esp_boot_state(esp, new) == BootState(counted=True, fell_back=False)
    # The last try: systemd-boot renamed it +0-2 before starting it. A red verdict on it must
    # still reboot, so that systemd-boot starts the other entry next.
    (entries_dir / "ostree-2-default+1-1.conf").rename(entries_dir / "ostree-2-default+0-2.conf")
    assert esp_boot_state(esp, new) == BootState(counted=True, fell_back=False)
    # The boot after it is the previous deployment's: a fallback.
    assert esp_boot_state(esp, old) == BootState(counted=False, fell_back=True)

