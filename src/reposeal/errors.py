"""Typed errors. Each carries a message a user can act on and an exit code scripts can use.

Exit codes (documented in `reposeal --help`):
  1  bad input: a package, database or signature that is malformed or hostile
  2  usage error (reported by the CLI parser)
  3  refused by policy: downgrade, same version with other content, ...
  4  the database is locked by another writer
  5  signing or signature verification failed
  6  environment problem: a required tool or key is missing
"""

from __future__ import annotations

from pathlib import Path


class ReposealError(Exception):
    """Base of every error reposeal reports to a user."""

    exit_code = 1

    def __init__(self, message: str, *, path: Path | str | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.message = message
        super().__init__(f"{path}: {message}" if path is not None else message)

    def at(self, path: Path | str) -> ReposealError:
        """Name the file this error is about, unless it already names one."""
        if self.path is None:
            self.path = Path(path)
            self.args = (f"{path}: {self.message}",)
        return self


# --- bad input -------------------------------------------------------------------------------


class InputError(ReposealError):
    """Bytes from outside that cannot be accepted."""


class UsageError(InputError):
    """Options that contradict each other (exit 2, as click's own usage errors)."""

    exit_code = 2


class UnknownCompressionError(InputError):
    """The file is not a tar archive in a compression reposeal supports."""


class TruncatedArchiveError(InputError):
    """The archive ends before its structure does (interrupted download or copy)."""


class CorruptArchiveError(InputError):
    """The archive or its compression is damaged or malformed."""


class UnsafeArchiveError(InputError):
    """The archive holds something dangerous: path traversal, duplicates, devices, bombs."""


class LimitExceededError(UnsafeArchiveError):
    """A size or count limit was exceeded (tar bomb, absurd sizes, endless data)."""


class InvalidPackageError(InputError):
    """A package's metadata (.PKGINFO) is missing, duplicated or invalid."""


class InvalidVersionError(InvalidPackageError):
    """A version string that pacman would not accept (epoch:pkgver-pkgrel)."""


class InvalidNameError(InvalidPackageError):
    """A package name outside pacman's allowed characters."""


class InvalidDatabaseError(InputError):
    """A sync or files database that is not what pacman and repo-add write."""


class InvalidSignatureFileError(InputError):
    """A detached signature file that cannot be used (armored, oversized, empty)."""


# --- refusals --------------------------------------------------------------------------------


class RefusedError(ReposealError):
    """The request is well formed but would make the repository worse; nothing was written."""

    exit_code = 3

    def __init__(self, reasons: list[str], *, path: Path | str | None = None) -> None:
        self.reasons = list(reasons)
        super().__init__("refused:\n  " + "\n  ".join(self.reasons), path=path)


# --- environment -----------------------------------------------------------------------------


class LockedError(ReposealError):
    """Another writer holds the database lock."""

    exit_code = 4


class SigningError(ReposealError):
    """Producing a signature failed."""

    exit_code = 5


class VerificationError(ReposealError):
    """A signature did not verify."""

    exit_code = 5


class ToolMissingError(ReposealError):
    """A required program or key is not available."""

    exit_code = 6
