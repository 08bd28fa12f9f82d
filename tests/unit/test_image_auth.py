"""Credentials lookup, challenge parsing and registries.conf."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path

import pytest

from bootc_py.errors import AuthError, ConfigError
from bootc_py.image import registries_conf
from bootc_py.image.auth import Credentials, auth_file_paths, find_credentials, parse_challenge


def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in ("REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR", "XDG_CONFIG_HOME", "DOCKER_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    return tmp_path


def _write(path: Path, auths: dict[str, dict[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"auths": auths}))
    return path


def test_lookup_order_and_most_specific_key(home: Path) -> None:
    _write(home / ".docker/config.json", {"https://index.docker.io/v1/": {"auth": _b64("d:1")},
                                          "reg.io": {"auth": _b64("docker:2")}})
    _write(home / ".config/containers/auth.json", {"reg.io": {"auth": _b64("user:3")},
                                                   "reg.io/team": {"auth": _b64("team:4")}})
    assert find_credentials("reg.io/other/x") == Credentials("user", "3", str(
        home / ".config/containers/auth.json"))
    assert find_credentials("reg.io/team/app").username == "team"  # type: ignore[union-attr]
    assert find_credentials("docker.io/library/x").username == "d"  # type: ignore[union-attr]
    assert find_credentials("elsewhere.io/x") is None
    # The runtime file comes before the config-home one.
    _write(home / "run/containers/auth.json", {"reg.io": {"auth": _b64("runtime:5")}})
    assert find_credentials("reg.io/other/x").username == "runtime"  # type: ignore[union-attr]


def test_authfile_and_env_replace_the_defaults(home: Path, monkeypatch: pytest.MonkeyPatch
                                               ) -> None:
    _write(home / ".config/containers/auth.json", {"reg.io": {"auth": _b64("default:1")}})
    explicit = _write(home / "my-auth.json", {"reg.io": {"username": "me", "password": "pw"}})
    assert find_credentials("reg.io/x", explicit) == Credentials("me", "pw", str(explicit))
    assert home / ".config/containers/auth.json" not in auth_file_paths(explicit)
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(explicit))
    assert find_credentials("reg.io/x").username == "me"  # type: ignore[union-attr]
    # A user-specified file (bootc's pull secret is passed so) is the only one read, as in
    # containers/image: Docker's config does not fill in what it lacks.
    _write(home / ".docker/config.json", {"other.io": {"auth": _b64("docker:2")}})
    assert auth_file_paths(explicit) == [explicit]
    assert find_credentials("other.io/x", explicit) is None
    assert find_credentials("other.io/x") is None
    monkeypatch.delenv("REGISTRY_AUTH_FILE")
    assert find_credentials("other.io/x").username == "docker"  # type: ignore[union-attr]


def test_missing_explicit_authfile_is_an_error(home: Path) -> None:
    with pytest.raises(AuthError, match="does not exist"):
        find_credentials("reg.io/x", home / "typo.json")


@pytest.mark.parametrize(("content", "msg"), [
    ("{not json", "not valid JSON"),
    ("[]", "not a JSON object"),
    ('{"auths": {"reg.io": {"auth": "bm9jb2xvbg=="}}}', "not base64 of user:password"),
    ('{"auths": {"reg.io": {"auth": "!!!"}}}', "not base64 of user:password"),
])
def test_malformed_auth_files(home: Path, content: str, msg: str) -> None:
    f = home / "auth.json"
    f.write_text(content)
    with pytest.raises(AuthError, match=msg):
        find_credentials("reg.io/x", f)


def test_secrets_stay_out_of_repr_and_logs(home: Path, caplog: pytest.LogCaptureFixture) -> None:
    f = _write(home / "a.json", {"reg.io": {"auth": _b64("alice:hunter2")}})
    caplog.set_level(logging.DEBUG, logger="bootc_py")
    creds = find_credentials("reg.io/x", f)
    assert creds is not None and creds.password == "hunter2"
    assert "hunter2" not in repr(creds) and "hunter2" not in str(creds)
    assert "hunter2" not in caplog.text and _b64("alice:hunter2") not in caplog.text


def test_parse_challenge() -> None:
    ch = parse_challenge('Bearer realm="https://auth.example.com/token",service="registry.io",'
                         'scope="repository:a/b:pull,push"')
    assert ch is not None and ch.scheme == "bearer"
    assert ch.params == {"realm": "https://auth.example.com/token", "service": "registry.io",
                         "scope": "repository:a/b:pull,push"}
    basic = parse_challenge('Basic realm="te\\"st"')
    assert basic is not None and basic.scheme == "basic" and basic.params["realm"] == 'te"st'
    assert parse_challenge("") is None


def test_registries_conf_v2_prefixes_and_dropins(tmp_path: Path) -> None:
    main = tmp_path / "registries.conf"
    main.write_text('unqualified-search-registries = ["docker.io"]\n'
                    '[[registry]]\nlocation = "127.0.0.1:5000"\ninsecure = true\n'
                    '[[registry]]\nprefix = "example.com/blocked"\nlocation = "example.com/b"\n'
                    'blocked = true\n'
                    '[[registry]]\nprefix = "*.internal"\nlocation = "x"\ninsecure = true\n'
                    '[[registry]]\nprefix = "old.io/team"\nlocation = "new.io/team2"\n')
    dropin = tmp_path / "registries.conf.d"
    dropin.mkdir()
    (dropin / "50-more.conf").write_text('[[registry]]\nlocation = "127.0.0.1:5001"\n'
                                         'insecure = true\n')
    conf = registries_conf.load(main)
    e = conf.lookup("127.0.0.1:5000/x/y")
    assert e is not None and e.insecure and not e.blocked
    assert conf.lookup("127.0.0.1:50000/x") is None  # a prefix must end at a separator
    assert conf.lookup("127.0.0.1:5001/x") is not None
    b = conf.lookup("example.com/blocked/app")
    assert b is not None and b.blocked
    assert conf.lookup("example.com/other") is None
    w = conf.lookup("reg.internal/app")
    assert w is not None and w.insecure
    assert conf.rewrite("old.io/team/app") == "new.io/team2/app"
    assert conf.rewrite("quay.io/x") == "quay.io/x"


def test_registries_conf_v1_and_errors(tmp_path: Path) -> None:
    f = tmp_path / "v1.conf"
    f.write_text('[registries.insecure]\nregistries = ["localhost:5000"]\n'
                 '[registries.block]\nregistries = ["evil.io"]\n')
    conf = registries_conf.load(f, tmp_path / "none.d")
    assert conf.lookup("localhost:5000/a").insecure  # type: ignore[union-attr]
    assert conf.lookup("evil.io/a").blocked  # type: ignore[union-attr]
    bad = tmp_path / "bad.conf"
    bad.write_text("[[registry]\n")
    with pytest.raises(ConfigError, match="cannot read"):
        registries_conf.load(bad, tmp_path / "none.d")
    assert registries_conf.load(tmp_path / "missing.conf").entries == ()


def test_registries_conf_mirrors_in_order_then_the_registry(tmp_path: Path) -> None:
    main = tmp_path / "registries.conf"
    main.write_text('[[registry]]\nprefix = "origin.test/team"\nlocation = "origin.test/t2"\n'
                    '[[registry.mirror]]\nlocation = "cache.test:5000/team"\ninsecure = true\n'
                    '[[registry.mirror]]\nlocation = "bydigest.test"\n'
                    'pull-from-mirror = "digest-only"\n'
                    '[[registry]]\nlocation = "strict.test"\nmirror-by-digest-only = true\n'
                    '[[registry.mirror]]\nlocation = "m.test"\n')
    extra = tmp_path / "sysroot-registries.conf.d"
    extra.mkdir()
    (extra / "50-cache.conf").write_text('[[registry]]\nlocation = "plain.test"\n'
                                         '[[registry.mirror]]\nlocation = "near.test"\n')
    conf = registries_conf.load(main, tmp_path / "none.d", extra_dropins=[extra])
    by_tag = conf.pull_sources("origin.test/team/os", by_digest=False)
    assert [(s.name, s.insecure, s.mirror) for s in by_tag] == [
        ("cache.test:5000/team/os", True, True), ("origin.test/t2/os", False, False)]
    by_digest = conf.pull_sources("origin.test/team/os", by_digest=True)
    assert [s.name for s in by_digest] == ["cache.test:5000/team/os", "bydigest.test/os",
                                           "origin.test/t2/os"]
    assert [s.name for s in conf.pull_sources("strict.test/a", by_digest=False)] == \
        ["strict.test/a"]
    assert [s.name for s in conf.pull_sources("plain.test/a", by_digest=False)] == \
        ["near.test/a", "plain.test/a"]  # an extra drop-in dir (an offline sysroot's)
    assert [s.name for s in conf.pull_sources("other.test/a", by_digest=False)] == \
        ["other.test/a"]
    bad = tmp_path / "bad-mirror.conf"
    bad.write_text('[[registry]]\nlocation = "a.test"\n[[registry.mirror]]\n'
                   'location = "b.test"\npull-from-mirror = "sometimes"\n')
    with pytest.raises(ConfigError, match="pull-from-mirror"):
        registries_conf.load(bad, tmp_path / "none.d")
