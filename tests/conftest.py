"""Shared test setup.

Markers come from the directory: tests/integration is `root`, tests/vm is `vm`; a module that
starts a docker-registry (tests/registry_fixture.py's Registry) is `registry`. The fast
iteration run is `pytest -m "not root and not vm"`; CI runs everything. A missing tool is a
failure, never a skip: use `require_tool()`.

Under pytest-xdist (`-n 2`, the default in pyproject.toml; `-n 0` runs in one process) the
unit and integration tests stay together on one worker (one work unit, in their usual
order), the VM tests spread over both, longest first, and every guest gets one vCPU so two
guests share the two cores instead of four vCPUs fighting over them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "vm-fixtures"))
sys.path.insert(0, str(REPO / "tests"))  # testlib and the shared test helpers

import registry_fixture  # noqa: E402
import tmpspace  # noqa: E402
from testlib import require_root, require_tool  # noqa: E402,F401  (re-exported)

# Seconds each VM test took in CI (a clean clone of 6c3eb81 on 2026-12-07, two VMs side by
# side, -smp 1 each; a slow day: about 1.5x the morning's run): the longest start first so the
# two workers finish together. A test not listed counts as 60 s and starts last, so a renamed
# test must be renamed here too (tests/unit/test_vm_schedule.py checks every name).
MEASURED_S = {
    "test_update_host.py::test_upgrade_rollback_switch_and_the_timer": 983,
    "test_autoheal.py::test_systemd_boot_bad_update_and_kernel_panic_fall_back": 924,
    "test_update_powercut.py::test_power_cuts_and_disk_full_leave_a_whole_host": 832,
    "test_autoheal.py::test_grub_bad_update_falls_back_and_v2_is_taken": 810,
    "test_update_strategies.py::test_fleet_lock_then_periodic": 756,
    "test_installer_pxe.py::test_pxe_bundle_over_http_installs_and_the_disk_boots": 550,
    "test_kickstart_boot.py::test_lvm_kickstart_via_loopback_in_a_guest_boots": 510,
    "test_installer_iso.py::test_iso_as_cd_under_bios_asks_which_of_two_empty_disks_and_the_"
    "disk_boots": 491,
    "test_install_in_guest.py::test_install_onto_a_virtio_disk_from_a_running_system": 457,
    "test_installer_iso.py::test_iso_as_usb_stick_under_uefi_with_its_kickstart_is_never_the_"
    "target": 449,
    "test_takeover_boot.py::test_takeover_bios_keeps_the_old_system_under_sysroot": 403,
    "test_takeover_boot.py::test_takeover_uefi_with_cleanup_removes_the_old_files_once": 359,
    "test_takeover_boot.py::test_reset_boots_a_fresh_stateroot_and_keeps_the_old_as_rollback": 275,
    "test_install_boot.py::test_bios_grub_boots_then_follows_a_deployment_staged_at_shutdown": 270,
    "test_install_boot.py::test_uefi_systemd_boot_boots_then_follows_a_deployment_staged_at_"
    "shutdown": 260,
    "test_install_coverage.py::test_vmdk_and_vhd_from_build_boot": 230,
    "test_fixture_harness.py::test_script_and_persistence_across_cold_boots": 170,
    "test_install_boot.py::test_uefi_grub_boots_and_keeps_etc_and_var": 165,
    "test_install_container.py::test_takeover_from_inside_the_image_then_the_disk_boots": 160,
    "test_install_container.py::test_install_from_inside_the_image": 159,
    "test_installer_iso.py::test_a_failing_kickstart_from_inst_ks_hd_says_why_and_the_live_"
    "system_stays_up": 131,
    "test_install_coverage.py::test_ext4_root_in_its_own_stateroot_boots": 120,
    "test_kickstart_boot.py::test_kickstart_install_boots_with_its_effects": 118,
    "test_install_coverage.py::test_bootloader_none_then_install_bootloader_boots": 113,
    "test_install_coverage.py::test_btrfs_root_boots": 113,
    "test_install_boot.py::test_qcow2_from_build_boots": 110,  # under 113: not in the top 25
}


def xdist_workers(config: pytest.Config) -> bool:
    return bool(os.environ.get("PYTEST_XDIST_WORKER")) or \
        bool(getattr(config.option, "numprocesses", None))


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """The unit and integration tests are one work unit (one worker, in file order: some
    modules chain their tests on one disk); each VM test is a unit of its own. (xdist's
    loadgroup marks do not take with pytest 9: its nodeid rewrite no longer sticks.)"""
    from xdist.scheduler import LoadScopeScheduling

    class HostTestsTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return nodeid if nodeid.startswith("tests/vm/") else "host"

    return HostTestsTogether(config, log)


def _needs_disk(config: pytest.Config) -> bool:
    """False for the fast run (`-m "not root and not vm"`, or only tests/unit)."""
    marks = str(config.option.markexpr or "")
    if "not root" in marks and "not vm" in marks:
        return False
    args = [str(a) for a in config.args]
    return not args or not all(a.startswith("tests/unit") for a in args)


def pytest_configure(config: pytest.Config) -> None:
    if not config.pluginmanager.has_plugin("tmpspace"):
        config.pluginmanager.register(tmpspace, "tmpspace")  # removes passed tests' tmp_path
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ.setdefault("BOOTC_PY_VM_CPUS", "1")
        return
    if config.option.basetemp is None:
        tmpspace.unlock_old_sessions(tmpspace.temp_root())
    if _needs_disk(config):
        short = tmpspace.shortfall(tmpspace.temp_root())
        if short:
            raise pytest.UsageError(short)


def _expected_s(item: pytest.Item) -> float:
    name = str(item.nodeid).split("/")[-1].split("[")[0]
    return MEASURED_S.get(name, 60.0)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).relative_to(REPO).parts
        if len(parts) > 1 and parts[0] == "tests":
            if parts[1] == "integration":
                item.add_marker(pytest.mark.root)
            elif parts[1] == "vm":
                item.add_marker(pytest.mark.vm)
        # A module that starts a docker-registry (tests/registry_fixture.py) talks to one.
        if getattr(getattr(item, "module", None), "Registry", None) is registry_fixture.Registry:
            item.add_marker(pytest.mark.registry)
    # A VM proof that has never been seen passing is not part of the default run (a failure
    # there would block every other change from landing): deselected, so it is reported as
    # such and never counted as a pass. BOOTC_PY_RUN_UNPROVEN=1 runs them.
    if os.environ.get("BOOTC_PY_RUN_UNPROVEN") != "1":
        unproven = [item for item in items if item.get_closest_marker("unproven")]
        if unproven:
            config.hook.pytest_deselected(items=unproven)
            items[:] = [item for item in items if not item.get_closest_marker("unproven")]
    if xdist_workers(config):
        # sorted() is stable and the same in every worker (xdist checks they agree).
        host = [item for item in items if not item.get_closest_marker("vm")]
        vm = sorted((item for item in items if item.get_closest_marker("vm")),
                    key=lambda item: -_expected_s(item))
        items[:] = host + vm
