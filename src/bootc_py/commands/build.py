"""`bootc-py build`: disk images and installer media from a bootable image."""

from __future__ import annotations

import typer


def build(imgref: str = typer.Argument(..., help="The bootable image to build from.")) -> None:
    """Build disk images (raw, qcow2, vmdk, vhd) from a bootable container image."""
    raise typer.Exit(2)
