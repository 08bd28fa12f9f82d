"""GRUB boot counting state in a real grubenv, written by the real grub-editenv."""

from __future__ import annotations

from pathlib import Path

from bootc_py.bootloader import bootcount
from bootc_py.run import output
from testlib import require_tool


def test_arm_bless_and_fallback_state(tmp_path: Path) -> None:
    require_tool("grub-editenv")
    env = tmp_path / bootcount.GRUBENV
    bootcount.arm_grub(tmp_path, 3)
    assert env.stat().st_size == 1024  # a GRUB environment block, as save_env needs
    assert bootcount.read_grubenv(tmp_path) == {"boot_counter": "3", "boot_success": "0"}
    assert "boot_counter=3" in output(["grub-editenv", str(env), "list"])
    assert not bootcount.grub_fell_back(tmp_path)
    bootcount.bless_grub(tmp_path)
    assert bootcount.read_grubenv(tmp_path) == {"boot_success": "1"}
    # What the generated grub.cfg leaves after the tries ran out:
    output(["grub-editenv", str(env), "set", "boot_counter=-1", "boot_success=0"])
    assert bootcount.grub_fell_back(tmp_path)
    bootcount.clear_grub_fallback(tmp_path)
    assert not bootcount.grub_fell_back(tmp_path)
