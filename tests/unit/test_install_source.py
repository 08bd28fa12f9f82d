"""Where an install's image comes from when --source-imgref is not given."""

from __future__ import annotations

from pathlib import Path

import pytest

from bootc_py.errors import UsageError
from bootc_py.installer import prepare


def test_inside_podman_uses_the_container_image(tmp_path: Path) -> None:
    env = tmp_path / ".containerenv"
    env.write_text('engine="podman-4.3.1"\nname="inst"\nid="abc"\n'
                   'image="localhost/os:1"\nimageid="0123abcd"\nrootless=0\n')
    storage = tmp_path / "storage"
    storage.mkdir()
    assert prepare.running_image(env, storage) == prepare.RunningImage(
        "containers-storage:0123abcd", "docker://localhost/os:1")


def test_unprivileged_container_names_what_to_do(tmp_path: Path) -> None:
    env = tmp_path / ".containerenv"
    env.write_text("")
    with pytest.raises(UsageError, match="does not name the image") as exc:
        prepare.running_image(env, tmp_path)
    assert exc.value.hint and "--privileged" in exc.value.hint


def test_storage_must_be_mounted(tmp_path: Path) -> None:
    env = tmp_path / ".containerenv"
    env.write_text('imageid="0123abcd"\n')
    with pytest.raises(UsageError, match="not mounted") as exc:
        prepare.running_image(env, tmp_path / "missing")
    assert exc.value.hint and "/var/lib/containers" in exc.value.hint


def test_elsewhere_asks_for_source_imgref(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prepare, "OSTREE_BOOTED", tmp_path / "not-booted")
    with pytest.raises(UsageError, match="not running inside a bootable container") as exc:
        prepare.running_image(tmp_path / "none", tmp_path)
    assert exc.value.hint and "--source-imgref" in exc.value.hint
