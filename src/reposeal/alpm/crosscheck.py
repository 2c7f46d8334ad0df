"""A package file read a second time, by libarchive, the library pacman installs it with.

reposeal's own reader (``reposeal.alpm.package``) is strict and fast, but a tar or
decompression corner where it and libarchive disagree (a GNU long name before a pax header,
the ustar prefix field, octal fields with junk, a zlib member after a gzip member, padding
between members) would let the enclave sign a package whose contents pacman sees otherwise.
So whoever decides on a package (the enclave's worker) reads it with both and refuses any
difference in member names, kinds, sizes and the ``.PKGINFO`` / ``.BUILDINFO`` bytes.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO

from reposeal.alpm.limits import DEFAULT_LIMITS, Limits
from reposeal.alpm.package import Package
from reposeal.errors import InvalidPackageError, LimitExceededError

_META = (".PKGINFO", ".BUILDINFO")


def _normal(name: str) -> str:
    return name[2:] if name.startswith("./") else name


def libarchive_view(
    raw: BinaryIO, limits: Limits = DEFAULT_LIMITS
) -> tuple[list[str], dict[str, bytes]]:
    """The member names libarchive reads (folders with a trailing ``/``) and the bytes of
    its ``.PKGINFO`` and ``.BUILDINFO``. Bounded like our own reader: members, metadata size."""
    import libarchive

    names: list[str] = []
    meta: dict[str, bytes] = {}
    try:
        with _reader(raw, limits) as reader:
            for entry in reader:
                if len(names) >= limits.max_members:
                    raise InvalidPackageError("libarchive reads more members than the limit")
                name = _normal(str(entry.pathname))
                if name in _META and entry.isfile:
                    if entry.size > limits.max_pkginfo_bytes:
                        raise InvalidPackageError(f"{name} is larger than the limit")
                    meta[name] = b"".join(entry.get_blocks())
                if entry.isdir and not name.endswith("/"):
                    name += "/"
                names.append(name)
    except libarchive.ArchiveError as exc:
        raise InvalidPackageError(f"libarchive cannot read the package ({exc})") from None
    return names, meta


@contextmanager
def _reader(raw: BinaryIO, limits: Limits) -> Iterator[Any]:
    """libarchive over the whole file: from its descriptor, or (in memory) its bytes."""
    import libarchive

    raw.seek(0)
    try:
        fd = raw.fileno()
    except (OSError, io.UnsupportedOperation):
        data = raw.read(limits.max_package_bytes + 1)
        if len(data) > limits.max_package_bytes:
            raise LimitExceededError("package is larger than the limit") from None
        with libarchive.memory_reader(data) as reader:
            yield reader
        return
    with libarchive.fd_reader(fd) as reader:
        yield reader


def disagreements(raw: BinaryIO, pkg: Package) -> list[str]:
    """How libarchive's reading of the package differs from ours (empty: they agree)."""
    names, meta = libarchive_view(raw)
    where = pkg.path.name
    problems = []
    if meta.get(".PKGINFO") != pkg.pkginfo:
        problems.append(f"{where}: libarchive reads another .PKGINFO than reposeal does")
    if meta.get(".BUILDINFO") != pkg.buildinfo:
        problems.append(f"{where}: libarchive reads another .BUILDINFO than reposeal does")
    theirs = sorted(n for n in names if not n.startswith("."))
    if len(names) != len(set(names)):
        problems.append(f"{where}: libarchive reads a member twice")
    if theirs != sorted(pkg.files):
        odd = sorted(set(theirs) ^ set(pkg.files))[:3]
        problems.append(
            f"{where}: libarchive reads other members than reposeal does ({', '.join(odd)})"
        )
    return problems
