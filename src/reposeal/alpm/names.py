"""What pacman and makepkg accept as package names, versions and file names. Pure."""

from __future__ import annotations

import re

from reposeal.alpm.limits import MAX_NAME, MAX_VERSION
from reposeal.errors import InvalidNameError, InvalidVersionError

# makepkg 6's lint (lint_pkgbuild/pkgname.sh): [[:alnum:]] and @._+-, not starting with a
# hyphen or a dot. Capitals are allowed (real Arch names have them: hunspell-en_AU); pacman
# compares names byte for byte, so Foo and foo are two packages. Only ASCII letters: makepkg
# runs its lint in the C locale.
_NAME_RE = re.compile(r"[A-Za-z0-9@_+][A-Za-z0-9@._+-]*")
# pkgver: printable ASCII without whitespace, ':', '/' or '-'; pkgrel: N or N.M; epoch: digits.
_VERSION_RE = re.compile(
    r"(?:(?P<epoch>[0-9]+):)?(?P<pkgver>[!-,.0-9;-~]+)-(?P<pkgrel>[0-9]+(?:\.[0-9]+)?)"
)
_ARCH_RE = re.compile(r"[A-Za-z0-9_]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# The suffixes pacman and repo-add recognise for packages.
PACKAGE_SUFFIXES = (
    ".pkg.tar",
    ".pkg.tar.gz",
    ".pkg.tar.zst",
    ".pkg.tar.xz",
    ".pkg.tar.bz2",
    ".pkg.tar.lz4",
)


def check_name(name: str) -> str:
    """Return ``name`` if pacman accepts it as a package name, else raise InvalidNameError."""
    if len(name) > MAX_NAME or not _NAME_RE.fullmatch(name):
        raise InvalidNameError(
            f"invalid package name {name!r}: use letters, digits and @._+- "
            "(not starting with '-' or '.'), at most 255 characters"
        )
    return name


def name_field(value: object) -> str:
    """A package or repository name from untrusted structured data (JSON): a string that
    ``check_name`` accepts; anything else (None, a number) is refused, never stringified."""
    if not isinstance(value, str):
        raise InvalidNameError(f"expected a name, got {type(value).__name__}")
    return check_name(value)


def arch_field(value: object) -> str:
    """An architecture from untrusted structured data (see ``name_field``)."""
    if not isinstance(value, str):
        raise InvalidNameError(f"expected an architecture, got {type(value).__name__}")
    return check_arch(value)


def check_version(version: str) -> str:
    """Return ``version`` if it is a full ``[epoch:]pkgver-pkgrel``, else raise."""
    if len(version) > MAX_VERSION or not _VERSION_RE.fullmatch(version):
        raise InvalidVersionError(
            f"invalid version {version!r}: expected [epoch:]pkgver-pkgrel where pkgver has no "
            "whitespace, ':', '/' or '-', and pkgrel is a number like 1 or 2.1"
        )
    return version


def check_arch(arch: str) -> str:
    """Return ``arch`` if it is a plausible architecture name (x86_64, aarch64, any...)."""
    if len(arch) > 64 or not _ARCH_RE.fullmatch(arch):
        raise InvalidNameError(f"invalid architecture {arch!r}")
    return arch


def split_entry_dir(dirname: str) -> tuple[str, str]:
    """Split a database entry directory ``name-pkgver-pkgrel`` into (name, version)."""
    parts = dirname.rsplit("-", 2)
    if len(parts) != 3:
        raise InvalidNameError(f"database entry {dirname!r} is not NAME-PKGVER-PKGREL")
    name = check_name(parts[0])
    version = check_version(f"{parts[1]}-{parts[2]}")
    return name, version


def check_package_filename(filename: str) -> str:
    """A package file name must be a plain name ending in a package suffix."""
    if (
        "/" in filename
        or filename.startswith(".")
        or len(filename) > 1024
        or _CONTROL.search(filename)
        or not filename.endswith(PACKAGE_SUFFIXES)
    ):
        raise InvalidNameError(
            f"invalid package file name {filename!r}: expected NAME-VERSION-ARCH"
            f"{{{','.join(PACKAGE_SUFFIXES)}}}"
        )
    return filename
