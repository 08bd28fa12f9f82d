"""`bootc-py kickstart validate` and `bootc-py install kickstart`: thin over kickstart/."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from bootc_py.commands.common import AUTHFILE, CACHE_DIR, TLS_VERIFY, parse_size, pull_options
from bootc_py.errors import UsageError

if TYPE_CHECKING:
    from bootc_py.installer.plan import InstallPlan
    from bootc_py.kickstart.source import KickstartText
    from bootc_py.kickstart.translate import KickstartPlan

app = typer.Typer(help="Check Anaconda kickstarts against what bootc-py can install.",
                  no_args_is_help=True)

KS = typer.Argument(..., metavar="KS", help="The kickstart: a path, - (stdin), an http(s):// "
                    "or a tftp:// URL.")
KS_VERSION = typer.Option(None, "--ks-version", metavar="VERSION",
                          help="pykickstart handler version (default: F46, the newest with the "
                          "bootc command).")
WARN_UNSUPPORTED = typer.Option(False, "--warn-unsupported",
                                help="Skip commands bootc-py does not support, with a warning "
                                "each (default: an error).")


def translate_kickstart(ks: str | KickstartText, ks_version: str | None, warn_unsupported: bool, *,
               bios: bool = True, uefi: bool = True, generic: bool = True,
               disk_size: int | None = None, cache_dir: Path | None = None,
               tls_verify: str | None = None, authfile: Path | None = None,
               source_imgref: str | None = None, target_imgref: str | None = None
               ) -> KickstartPlan:
    from bootc_py.kickstart import parse, source, translate

    text = source.load(ks) if isinstance(ks, str) else ks
    doc = parse.parse(text.text, source=text.name, base_dir=text.base,
                      version=ks_version or parse.DEFAULT_VERSION)
    opts = translate.TranslateOptions(
        pull=pull_options(cache_dir, tls_verify, authfile), warn_unsupported=warn_unsupported,
        bios=bios, uefi=uefi, generic_image=generic, disk_size=disk_size,
        source_imgref=source_imgref, target_imgref=target_imgref)
    return translate.translate(doc, opts)


def report_problems(exc: Exception) -> None:
    """Print every problem of a KickstartError (and its warnings), one line each."""
    from bootc_py.kickstart.translate import KickstartError

    assert isinstance(exc, KickstartError)
    for warning in exc.warnings:
        typer.echo(f"warning: {warning}", err=True)
    for problem in exc.problems:
        typer.echo(str(problem), err=True)


@app.command("validate")
def validate(
    ks: str = KS,
    ks_version: str = KS_VERSION,
    warn_unsupported: bool = WARN_UNSUPPORTED,
) -> None:
    """Print the install plan a kickstart makes, or every problem with its line. Writes
    nothing."""
    from bootc_py.kickstart.translate import KickstartError

    try:
        plan = translate_kickstart(ks, ks_version, warn_unsupported)
    except KickstartError as exc:
        report_problems(exc)
        raise typer.Exit(1) from None
    typer.echo(plan.render(), nl=False)


def install_kickstart(
    ks: str = KS,
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the whole plan (disk, "
                                 "partitions, LVM, users, network, kargs, scripts) and change "
                                 "nothing."),
    via_loopback: Path = typer.Option(None, "--via-loopback", metavar="FILE",
                                      help="Install into this disk image file (created if "
                                      "missing) instead of the kickstart's disk."),
    disk_size: str = typer.Option(None, "--disk-size", metavar="SIZE",
                                  help="With --via-loopback: size of a new image file."),
    ks_version: str = KS_VERSION,
    warn_unsupported: bool = WARN_UNSUPPORTED,
    cache_dir: Path = CACHE_DIR,
    tls_verify: str = TLS_VERIFY,
    authfile: Path = AUTHFILE,
) -> None:
    """Install the image an Anaconda kickstart names, the way the kickstart says.

    Example: bootc-py install kickstart --via-loopback disk.raw ks.cfg
    """
    from bootc_py.disk.layout import plan_layout
    from bootc_py.kickstart import apply
    from bootc_py.kickstart.translate import KickstartError

    size = parse_size(disk_size, "--disk-size") if disk_size else None
    try:
        plan = translate_kickstart(ks, ks_version, warn_unsupported, disk_size=size,
                                   cache_dir=cache_dir, tls_verify=tls_verify, authfile=authfile)
    except KickstartError as exc:
        report_problems(exc)
        raise typer.Exit(1) from None
    device = apply.target_device(plan, via_loopback)
    if dry_run:
        known = apply.known_size(device, via_loopback is not None, size)
        layout = plan_layout(plan.layout, known) if known else None
        typer.echo(plan.render(layout), nl=False)
        return
    if device is None:
        raise UsageError("the kickstart names no disk",
                         "add ignoredisk --only-use=DISK, or give --via-loopback FILE")
    done = apply.install(plan, device, via_loopback=via_loopback is not None)
    for warning in (*plan.warnings, *done.warnings):
        typer.echo(f"warning: {warning}", err=True)
    typer.echo(done.summary)


def build_installer(ks: str | KickstartText, imgref: str, *, target_imgref: str | None,
                    kargs: list[str],
                    disk_size: int | None, cache_dir: Path | None, tls_verify: str | None,
                    authfile: Path | None) -> Callable[[Path], InstallPlan]:
    """`build IMGREF --kickstart KS`: the kickstart's install (layout, users, kargs, %post)
    into the image file, with build's IMGREF as the payload and its --karg added."""
    from bootc_py.kickstart import apply
    from bootc_py.kickstart.translate import KickstartError

    try:
        plan = translate_kickstart(ks, None, False, disk_size=disk_size, cache_dir=cache_dir,
                          tls_verify=tls_verify, authfile=authfile, source_imgref=imgref,
                          target_imgref=target_imgref)
    except KickstartError as exc:
        report_problems(exc)
        raise typer.Exit(1) from None
    if kargs:
        plan = replace(plan, options=replace(plan.options,
                                             kargs=(*plan.options.kargs, *kargs)))
    for warning in plan.warnings:
        typer.echo(f"warning: {warning}", err=True)

    def install(raw: Path) -> InstallPlan:
        done = apply.install(plan, raw, via_loopback=True)
        for warning in done.warnings:
            typer.echo(f"warning: {warning}", err=True)
        return done.plan
    return install
