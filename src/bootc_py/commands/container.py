"""`bootc-py container ...` commands."""

from __future__ import annotations

import typer

app = typer.Typer(help="container commands", no_args_is_help=True)
