"""Typed errors. Library code raises these; only cli.py turns them into an exit code."""

from __future__ import annotations

from collections.abc import Sequence


class BootcPyError(Exception):
    """Base of every error bootc-py reports to the user.

    `message` is one line saying what is wrong; `hint` (optional) says what to do about it.
    """

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(BootcPyError):
    """The user asked for something inconsistent or malformed."""

    exit_code = 2


class ToolMissingError(BootcPyError):
    """An external program bootc-py needs is not installed."""

    def __init__(self, tool: str, package: str | None = None) -> None:
        hint = f"install the Debian package '{package}'" if package else None
        super().__init__(f"required program '{tool}' was not found in PATH", hint)
        self.tool = tool
        self.package = package


class CommandError(BootcPyError):
    """An external program failed."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str = "") -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr
        tail = stderr.strip().splitlines()[-1] if stderr.strip() else ""
        msg = f"'{' '.join(self.argv[:3])}{' ...' if len(self.argv) > 3 else ''}' failed"
        msg += f" (exit {returncode})"
        if tail:
            msg += f": {tail}"
        super().__init__(msg)


class ImageRefError(UsageError):
    """A malformed image reference."""


class ImageError(BootcPyError):
    """Fetching, verifying or reading an image failed."""


class RegistryError(ImageError):
    """The registry answered with an error or could not be reached."""


class AuthError(RegistryError):
    """The registry refused the credentials (or asked for some and had none)."""


class NotFoundError(RegistryError):
    """The registry does not know the image or blob."""


class DigestMismatchError(ImageError):
    """A blob's content does not match its digest."""


class UnsupportedError(ImageError):
    """A media type, platform or feature bootc-py does not handle."""


class UnsafePathError(ImageError):
    """A layer tries to write outside the target directory."""


class LintError(BootcPyError):
    """The image does not satisfy the bootable-image contract."""


class DiskError(BootcPyError):
    """The target disk is unsuitable or could not be prepared."""


class StoreError(BootcPyError):
    """Importing into or reading from the ostree repository failed."""


class InstallError(BootcPyError):
    """An installation step failed."""


class BootloaderError(BootcPyError):
    """Installing or configuring a bootloader failed."""


class ArtifactError(BootcPyError):
    """Building a disk image or other artifact failed."""


class ConfigError(UsageError):
    """A configuration file is malformed."""


class TimeoutExpired(BootcPyError):
    """Something awaited did not happen in time."""


class UpdateError(BootcPyError):
    """An upgrade, switch or rollback of an installed host cannot proceed."""


class NoSpaceError(BootcPyError):
    """A filesystem lacks the space a write needs (before it starts, or ENOSPC during it)."""


class CommandNoSpaceError(CommandError, NoSpaceError):
    """An external program failed with ENOSPC. Still a CommandError (so callers that handle a
    failed program keep doing so), but its message names the filesystem, not the argv."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str, message: str,
                 hint: str | None) -> None:
        CommandError.__init__(self, argv, returncode, stderr)
        self.args = (message,)
        self.message = message
        self.hint = hint
