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
    special, unbalanced = _grub_scan(karg)
    if unbalanced:
        return "it has an unbalanced quote (grub.cfg would not parse)"
    if special:
        return (f"{special!r} is syntax on GRUB's linux line (grub.cfg would run, expand or "
                "drop what follows, and the disk would not boot)")
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


def _grub_scan(karg: str) -> tuple[str | None, bool]:
    """As GRUB's script parser reads `karg`: (the first character it would act on: `$`
    anywhere (expanded even in double quotes), `;|&<>{}` and a backslash outside quotes, `#`
    starting a word; whether a quote is left open). A ' inside "..." is literal, as is a "
    inside '...'."""
    open_quote = ""
    special: str | None = None
    for i, c in enumerate(karg):
        if c in "\"'" and open_quote in ("", c):
            open_quote = "" if open_quote else c
        elif special is None and (
                (c == "$" and open_quote != "'") or (not open_quote and (
                    c in ";|&<>{}\\" or (c == "#" and (i == 0 or karg[i - 1].isspace()))))):
            special = c
    return special, bool(open_quote)
