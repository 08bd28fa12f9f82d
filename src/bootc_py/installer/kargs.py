"""Kernel arguments checked before anything is written.

They end up on the `linux` line of every grub.cfg and BLS entry: a stray quote is a GRUB syntax
error (the disk does not boot), a newline breaks the BLS file mid-install. The installer itself
writes `root=UUID=...` and `rw`, so a second root= or an `ro` would contradict it.
"""

from __future__ import annotations

from collections.abc import Iterable

from bootc_py.errors import UsageError


def check(kargs: Iterable[str], source: str) -> None:
    """Raise a one-line UsageError for the first kernel argument that cannot be installed."""
    for karg in kargs:
        problem = problem_of(karg)
        if problem:
            raise UsageError(f"kernel argument {karg!r} from {source}: {problem}",
                             "fix or remove it; each argument is one word, "
                             'quote values with spaces as name="a b"')


def words(karg: str) -> list[str]:
    """The kernel's view of one `karg`: words split on whitespace outside double quotes (a
    `--karg "quiet ro"` or a kargs.d entry "a b" is two arguments on the linux line)."""
    out: list[str] = []
    word, quoted = "", False
    for c in karg:
        if c == '"':
            quoted = not quoted
        if c.isspace() and not quoted:
            if word:
                out.append(word)
            word = ""
        else:
            word += c
    if word:
        out.append(word)
    return out


def problem_of(karg: str) -> str | None:
    """Why `karg` cannot be installed, or None."""
    if not karg.strip():
        return "it is empty"
    if "\n" in karg or "\r" in karg:
        return "it contains a newline"
    if any(ord(c) < 0x20 or c == "\x7f" for c in karg):
        return "it contains a control character"
    if karg.count('"') % 2 or karg.count("'") % 2:
        return "it has an unbalanced quote (grub.cfg would not parse)"
    many = len(words(karg)) > 1
    for word in words(karg):
        # The kernel drops the quotes around a parameter ("ro", "root=x" are ro and root=).
        name, eq, _ = word.replace('"', "").partition("=")
        where = f"{word!r} in it: " if many else ""
        if name == "root" and eq:
            return (f"{where}the installer sets root=UUID=<root> itself; a second root= is "
                    "not allowed")
        if name == "ro" and not eq:
            return f"{where}the installer mounts the root read-write ('rw'; /usr stays read-only)"
    return None
