"""plan_update: what an upgrade fetches and whether it deploys (pure), and the space check."""

from __future__ import annotations

from pathlib import Path

import pytest

from bootc_py.errors import NoSpaceError
from bootc_py.image.source import Layer
from bootc_py.store.sysroot import Deployment
from bootc_py.update.rollback import plan_rollback
from bootc_py.update.upgrade import Action, check_space, plan_update

GZ = "application/vnd.oci.image.layer.v1.tar+gzip"
BASE = Layer("sha256:" + "b" * 64, "sha256:" + "1" * 64, 50_000_000, GZ)
TOP1 = Layer("sha256:" + "c" * 64, "sha256:" + "2" * 64, 1_000, GZ)
TOP2 = Layer("sha256:" + "d" * 64, "sha256:" + "3" * 64, 2_000, GZ)
V1, V2 = "sha256:" + "e" * 64, "sha256:" + "f" * 64


def plan(**kw: object):  # type: ignore[no-untyped-def]
    args: dict[str, object] = dict(
        imgref="docker://127.0.0.1:5000/os/syn:latest", current_digest=V1, staged_digest=None,
        new_digest=V2, version="2.0", layers=(BASE, TOP2),
        have_layers=frozenset({BASE.diff_id, TOP1.diff_id}), free_bytes=10_000_000,
        stage=False)
    args.update(kw)
    return plan_update(**args)  # type: ignore[arg-type]


def test_only_the_changed_layer_is_fetched() -> None:
    p = plan()
    assert p.action is Action.DEPLOY
    assert p.fetch == (TOP2,) and p.reuse == (BASE,)
    assert p.bytes_to_fetch == 2_000 and p.bytes_needed == 6_000
    assert p.render() == (
        "image:    docker://127.0.0.1:5000/os/syn:latest\n"
        f"current:  {V1}\n"
        f"new:      {V2} (2.0)\n"
        "action:   deploy\n"
        "deploy:   the default at once\n"
        "fetch:    1 layer(s), 2000 bytes\n"
        "reuse:    1 layer(s)\n"
        "needs:    6000 bytes of 10000000 free\n"
        f"  fetch {TOP2.digest} 2000\n")


def test_unchanged_digest_is_nothing_to_do() -> None:
    p = plan(new_digest=V1)
    assert p.action is Action.NONE and p.fetch == ()
    check_space(plan(new_digest=V1, free_bytes=0))  # nothing to fetch: no refusal


def test_an_update_already_staged_is_not_fetched_again() -> None:
    p = plan(staged_digest=V2, stage=True)
    assert p.action is Action.ALREADY_STAGED and p.fetch == ()


def test_going_back_to_the_current_image_drops_a_staged_one() -> None:
    # Staged v2, registry back at v1 (= booted): deploy v1 again so v2 does not apply.
    assert plan(new_digest=V1, staged_digest=V2, stage=True).action is Action.DEPLOY


def test_a_layer_used_twice_is_fetched_once() -> None:
    p = plan(layers=(TOP2, BASE, TOP2), have_layers=frozenset())
    assert p.fetch == (TOP2, BASE)


def test_space_refusal_names_both_figures() -> None:
    with pytest.raises(NoSpaceError) as err:
        check_space(plan(layers=(BASE,), have_layers=frozenset(), free_bytes=20_000_000))
    assert "needs about 150.0 MB" in err.value.message
    assert "20.0 MB free" in err.value.message


def _dep(index: int, *, booted: bool = False, staged: bool = False) -> Deployment:
    return Deployment(Path("/"), index, "default", f"{index}" * 64, 0, booted=booted,
                      staged=staged)


def test_rollback_plans() -> None:
    # Offline: the second becomes the default.
    assert plan_rollback((_dep(0), _dep(1))).new_default.index == 1
    # Booted with a staged one: the rollback (not the staged) becomes default; staged dropped.
    p = plan_rollback((_dep(0, staged=True), _dep(1, booted=True), _dep(2)))
    assert p.new_default.index == 2 and p.dropped_staged is not None
    # A queued rollback is undone by a second one: the booted one is the default again.
    p = plan_rollback((_dep(0), _dep(1, booted=True)))
    assert p.new_default.index == 1 and p.undoes_queued
