"""Kernel arguments are checked before anything is written, with one-line reasons."""

from __future__ import annotations

import pytest

from bootc_py.errors import UsageError
from bootc_py.installer import kargs


@pytest.mark.parametrize(("karg", "reason"), [
    ('console="ttyS0', "unbalanced quote"),
    ("it's", "unbalanced quote"),
    ("quiet\nsplash", "newline"),
    ("", "it is empty"),
    ("  ", "it is empty"),
    ("a\tb\x01", "control character"),
    ("root=/dev/sda2", "a second root= is not allowed"),
    ("ro", "read-write"),
    # The forms the kernel reads as a second root= or an ro: several words in one karg (a
    # `--karg "quiet ro"`, a kargs.d entry), quoted parameter names.
    ("quiet ro", "'ro' in it: the installer mounts the root read-write"),
    ("ro  quiet", "'ro' in it: the installer mounts the root read-write"),
    ('"ro"', "the installer mounts the root read-write"),
    ("quiet root=/dev/sda2", "'root=/dev/sda2' in it: the installer sets root=UUID"),
    ('"root=/dev/sda2"', "a second root= is not allowed"),
    ('x="a b" root=LABEL=r', "'root=LABEL=r' in it"),
    # GRUB's script syntax on the linux line: `x;halt` runs halt and drops ostree= after it.
    ("x;halt", "';' is syntax on GRUB's linux line"),
    ("a|b", "'|' is syntax"),
    ("a&b", "'&' is syntax"),
    ("a>b", "'>' is syntax"),
    ("y=$root", "'$' is syntax"),
    ('y="$root"', "'$' is syntax"),
    ("#comment", "'#' is syntax"),
    ("quiet #rest", "'#' is syntax"),
    ("a{b}", "'{' is syntax"),
    ("a\\b", "'\\\\' is syntax"),
])
def test_bad_kargs_are_refused(karg: str, reason: str) -> None:
    with pytest.raises(UsageError) as err:
        kargs.check(["quiet", karg], "--karg")
    assert err.value.message.startswith(f"kernel argument {karg!r} from --karg: ")
    assert reason in err.value.message
    assert "\n" not in err.value.message


@pytest.mark.parametrize("karg", ['opt="a b"', "console=ttyS0,115200n8", "rootflags=x",
                                  "rd.root=1", "systemd.unit=multi-user.target", "rw",
                                  'opt="ro root=x"', "rootwait", "ro.x=1", "quiet splash",
                                  'msg="it\'s"', 'a="b;c|d"', "x=a#b", "y='$root'"])
def test_good_kargs_pass(karg: str) -> None:
    kargs.check([karg], "--karg")
