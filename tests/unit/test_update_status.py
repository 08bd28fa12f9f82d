"""Status rendering (golden) and the YAML emitter, from a fixed HostStatus."""

from __future__ import annotations

from pathlib import Path

import pytest

from bootc_py.update.cached_update import CachedUpdate
from bootc_py.update.status import DeploymentStatus, Format, HostStatus
from bootc_py.update.yaml_out import dump

DATA = Path(__file__).parent / "data" / "status"
D1, D2, D3 = ("sha256:" + c * 64 for c in "123")


def _dep(index: int, digest: str, version: str, *, booted: bool = False, staged: bool = False,
         cached: CachedUpdate | None = None) -> DeploymentStatus:
    return DeploymentStatus(index=index, stateroot="default", checksum=f"{index}" * 64,
                            serial=0, booted=booted, staged=staged, pinned=index == 2,
                            imgref="docker://127.0.0.1:5000/os/syn:latest",
                            manifest_digest=digest, version=version,
                            timestamp="2026-01-02T03:04:05Z", architecture="amd64",
                            cached_update=cached)


CACHED = CachedUpdate("docker://127.0.0.1:5000/os/syn:latest", D3, "3.0",
                      "2026-02-03T04:05:06Z", "amd64", "2026-02-04T00:00:00Z")
BOOTED = HostStatus(Path("/"), (_dep(0, D2, "2.0", staged=True),
                                _dep(1, D1, "1.0", booted=True, cached=CACHED),
                                _dep(2, D3, "0.9")), is_booted=True)
OFFLINE = HostStatus(Path("/mnt"), (_dep(0, D2, "2.0"), _dep(1, D1, "1.0")), is_booted=False)


@pytest.mark.parametrize(("name", "host", "fmt"), [
    ("booted.txt", BOOTED, Format.HUMAN), ("booted.json", BOOTED, Format.JSON),
    ("booted.yaml", BOOTED, Format.YAML), ("offline.txt", OFFLINE, Format.HUMAN),
    ("offline.yaml", OFFLINE, Format.YAML)])
def test_status_golden(name: str, host: HostStatus, fmt: Format) -> None:
    assert host.render(fmt) == (DATA / name).read_text()


def test_booted_document_in_bootc_schema() -> None:
    doc = BOOTED.to_bootc()
    assert doc["apiVersion"] == "org.containers.bootc/v1" and doc["kind"] == "BootcHost"
    assert doc["spec"] == {"image": {"image": "127.0.0.1:5000/os/syn:latest",
                                     "transport": "registry"}, "bootOrder": "default"}
    st = doc["status"]
    assert st["staged"]["image"]["imageDigest"] == D2
    assert st["booted"]["image"]["imageDigest"] == D1
    assert st["booted"]["cachedUpdate"]["imageDigest"] == D3
    assert st["rollback"]["image"]["version"] == "0.9" and st["rollback"]["pinned"] is True
    assert st["rollbackQueued"] is False and st["type"] == "bootcHost"
    assert "deployments" not in st


def test_yaml_quotes_what_yaml_would_misread() -> None:
    # (The integration test reads the whole document back with Debian's python3-yaml.)
    text = dump({"odd": ["yes", "1.0", "a: b", "", "#x", "2026-01-02", None, True, 3, [], {}],
                 "plain": "sha256:ab", "nested": {"k": [{"a": 1, "b": "x"}]}})
    assert text == ('odd:\n- "yes"\n- "1.0"\n- "a: b"\n- ""\n- "#x"\n- "2026-01-02"\n'
                    "- null\n- true\n- 3\n- []\n- {}\nplain: sha256:ab\n"
                    "nested:\n  k:\n  - a: 1\n    b: x\n")


def _health() -> HostStatus:
    """A host that fell back from D2 to D1 (booted, green) and recorded D2 as bad."""
    from dataclasses import replace

    from bootc_py.update.health import BadImage, CheckKind, CheckResult, HealthVerdict, Verdict

    green = HealthVerdict("1" * 64, Verdict.GREEN, "2026-12-01T21:05:00+00:00", (
        CheckResult("10-fixture.sh", CheckKind.REQUIRED, True, "ok", 0.1),
        CheckResult("20-net.sh", CheckKind.WANTED, False, "exit 1", 0.2)))
    red = HealthVerdict("0" * 64, Verdict.RED, "2026-12-01T21:01:00+00:00", (
        CheckResult("10-fixture-broken.sh", CheckKind.REQUIRED, False, "exit 1", 0.1),))
    bad = BadImage(D2, "docker://127.0.0.1:5000/os/syn:latest", "0" * 64,
                   "2026-12-01T21:04:00+00:00", "1" * 64, "red at 2026-12-01T21:01:00+00:00: "
                   "10-fixture-broken.sh exit 1")
    return HostStatus(Path("/"), (replace(_dep(1, D1, "1.0", booted=True), health=green),
                                  replace(_dep(0, D2, "2.0"), health=red)),
                      is_booted=True, bad_images=(bad,))


@pytest.mark.parametrize(("name", "fmt"), [("health.txt", Format.HUMAN),
                                           ("health.json", Format.JSON)])
def test_status_shows_health_and_fallbacks(name: str, fmt: Format) -> None:
    assert _health().render(fmt) == (DATA / name).read_text()


def test_health_extension_keeps_bootc_fields() -> None:
    doc = _health().to_bootc()
    booted = doc["status"]["booted"]
    # bootc's fields are all there, unchanged; the extension only adds keys bootc ignores.
    assert {k for k in booted if not k.startswith("bootc-py.")} == \
        set(BOOTED.to_bootc()["status"]["booted"])
    assert booted["bootc-py.health"] == {"verdict": "green", "checkedAt":
                                         "2026-12-01T21:05:00+00:00", "failed": [],
                                         "warnings": ["20-net.sh: exit 1"], "checks": 2}
    assert doc["status"]["rollback"]["bootc-py.health"]["failed"] == \
        ["10-fixture-broken.sh: exit 1"]
    assert [b["imageDigest"] for b in doc["status"]["bootc-py.badImages"]] == [D2]
    assert "bootc-py.badImages" not in BOOTED.to_bootc()["status"]
