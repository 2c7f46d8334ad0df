"""The ``.BUILDINFO`` of a package: the facts a reproducible-build check needs. Pure."""

from __future__ import annotations

import re

from reposeal.errors import InvalidPackageError

_HEX64 = re.compile(r"[0-9a-f]{64}")


def pkgbuild_sha256(raw: bytes | None) -> str | None:
    """``pkgbuild_sha256sum`` from .BUILDINFO bytes (None if absent); strict on format."""
    if raw is None:
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidPackageError(".BUILDINFO is not valid UTF-8") from None
    found = None
    for line in text.split("\n"):
        key, sep, value = line.partition(" = ")
        if sep and key == "pkgbuild_sha256sum":
            if found is not None:
                raise InvalidPackageError(".BUILDINFO has pkgbuild_sha256sum twice")
            if not _HEX64.fullmatch(value.strip()):
                raise InvalidPackageError(".BUILDINFO pkgbuild_sha256sum is not a sha256")
            found = value.strip()
    return found
