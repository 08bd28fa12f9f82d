"""`bootc-py container ...`: commands run on or about a bootable container image."""

from __future__ import annotations

from pathlib import Path

import typer

from bootc_py.commands.common import AUTHFILE, CACHE_DIR, TLS_VERIFY, pull_options

app = typer.Typer(help="Check bootable container images.", no_args_is_help=True)


@app.command("lint")
def lint_cmd(
    target: str = typer.Argument("/", help="A root filesystem directory, or an image reference "
                                 "(default: / , the container being built)."),
    cache_dir: Path = CACHE_DIR,
    tls_verify: str = TLS_VERIFY,
    authfile: Path = AUTHFILE,
) -> None:
    """Check an image against the bootable-image contract; one line per problem.

    Exits 1 when there is an error (warnings alone exit 0). Use it as the last RUN of a
    Containerfile: RUN bootc-py container lint
    """
    from bootc_py import lint

    if Path(target).is_dir():
        problems = lint.check(lint.DirView(Path(target)), root=Path(target))
    else:
        from bootc_py.image.ref import parse_imgref
        from bootc_py.image.source import pull
        from bootc_py.installer.preflight import summarize

        image = pull(parse_imgref(target), pull_options(cache_dir, tls_verify, authfile))
        summary = summarize(image)
        problems = lint.check(summary, labels=image.labels, initramfs_ok=summary.initramfs_ok)
    for problem in problems:
        typer.echo(str(problem))
    errors = lint.errors(problems)
    if errors:
        typer.echo(f"{target}: {len(errors)} error(s), {len(problems) - len(errors)} warning(s)",
                   err=True)
        raise typer.Exit(1)
    typer.echo(f"{target}: bootable ({len(problems)} warning(s))", err=True)
