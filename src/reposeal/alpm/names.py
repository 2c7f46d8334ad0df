"""What pacman and makepkg accept as package names, versions and file names. Pure."""

from __future__ import annotations

import re

from reposeal.errors import InvalidNameError, InvalidVersionError

# makepkg's lint: lowercase alphanumerics and @._+-, not starting with a hyphen or a dot.
_NAME_RE = re.compile(r"[a-z0-9@_+][a-z0-9@._+-]*")
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
)
MAX_NAME = 255
MAX_VERSION = 255


def check_name(name: str) -> str:
    """Return ``name`` if pacman accepts it as a package name, else raise InvalidNameError."""
    if len(name) > MAX_NAME or not _NAME_RE.fullmatch(name):
        raise InvalidNameError(
            f"invalid package name {name!r}: use lowercase letters, digits and @._+- "
            "(not starting with '-' or '.'), at most 255 characters"
        )
    return name


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
