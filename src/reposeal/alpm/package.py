"""Reading a package file: metadata, file list, checksums, in one streaming pass."""

from __future__ import annotations

import base64
import hashlib
import os
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from reposeal.alpm import compression
from reposeal.alpm.desc import PackageFacts, sorted_paths
from reposeal.alpm.limits import DEFAULT_LIMITS, Limits
from reposeal.alpm.names import check_package_filename
from reposeal.alpm.pkginfo import parse_pkginfo
from reposeal.alpm.safeio import open_regular
from reposeal.alpm.tarformat import TarReader
from reposeal.errors import (
    InvalidPackageError,
    InvalidSignatureFileError,
    LimitExceededError,
    ReposealError,
)

_META = frozenset({".PKGINFO", ".BUILDINFO"})


@dataclass(frozen=True, slots=True)
class Package:
    """A package file as the databases describe it."""

    path: Path
    facts: PackageFacts
    files: tuple[str, ...]  # for the files database, sorted, directories end in '/'
    buildinfo: bytes | None
    pkginfo: bytes = b""  # the .PKGINFO bytes, as read


class _HashingReader:
    """A raw file reader that hashes every byte it hands out."""

    def __init__(self, f: BinaryIO, limit: int) -> None:
        self._f = f
        self._limit = limit
        self.size = 0
        self.sha256 = hashlib.sha256()
        self.md5 = hashlib.md5(usedforsecurity=False)

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self.size += len(data)
        if self.size > self._limit:
            raise LimitExceededError(f"package file is larger than {self._limit} bytes")
        self.sha256.update(data)
        self.md5.update(data)
        return data

    def readinto(self, b: bytearray | memoryview) -> int:  # used by the zstd and gzip readers
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def readable(self) -> bool:
        return True

    def drain(self) -> None:
        while self.read(1 << 20):
            pass


def read_signature_file(path: Path, limits: Limits = DEFAULT_LIMITS) -> bytes:
    """A package's detached ``.sig``, checked the way repo-add checks it."""
    with open_regular(path) as f:
        data = f.read(limits.max_signature_bytes + 1)
    if len(data) > limits.max_signature_bytes:
        raise InvalidSignatureFileError(
            f"signature is larger than {limits.max_signature_bytes} bytes", path=path
        )
    if not data:
        raise InvalidSignatureFileError("signature file is empty", path=path)
    if b"BEGIN PGP SIGNATURE" in data:
        raise InvalidSignatureFileError(
            "armored signatures cannot be used for packages; create it with "
            "gpg --detach-sign --no-armor",
            path=path,
        )
    return data


def read_package(
    path: Path,
    *,
    include_sig: bool = False,
    limits: Limits = DEFAULT_LIMITS,
    opened: BinaryIO | None = None,
) -> Package:
    """Read and validate one package file. Every problem is an InputError naming the file.

    ``opened``: the file, already open (a sandboxed worker gets descriptors, not paths);
    ``path`` then only names it. The caller keeps ownership of ``opened``."""
    try:
        check_package_filename(path.name)
        with nullcontext(opened) if opened is not None else open_regular(path) as raw:
            size = raw.seek(0, os.SEEK_END)  # a file or, in a worker's warm-up, memory
            raw.seek(0)
            if size > limits.max_package_bytes:
                raise LimitExceededError(f"package is larger than {limits.max_package_bytes} bytes")
            kind = compression.detect(raw.read(263))
            raw.seek(0)
            hashing = _HashingReader(raw, limits.max_package_bytes)
            stream = compression.open_stream(hashing, kind)  # type: ignore[arg-type]
            reader = TarReader(stream, limits, max_total=limits.max_unpacked_bytes)
            pkginfo: bytes | None = None
            buildinfo: bytes | None = None
            files: list[str] = []
            try:
                for m in reader.members(_META.__contains__, limits.max_pkginfo_bytes):
                    if m.name == ".PKGINFO":
                        if m.kind != "file":
                            raise InvalidPackageError(".PKGINFO is not a regular file")
                        pkginfo = reader.last_data
                    elif m.name == ".BUILDINFO":
                        buildinfo = reader.last_data
                    elif not m.name.startswith("."):
                        files.append(m.name)
                hashing.drain()
            except compression.DECOMPRESS_ERRORS as exc:
                raise compression.error_from(exc) from None
        if pkginfo is None:
            raise InvalidPackageError("no .PKGINFO: not a pacman package")
        info = parse_pkginfo(pkginfo)
        pgpsig = ""
        sig_path = path.with_name(path.name + ".sig")
        if include_sig and sig_path.exists():
            pgpsig = base64.b64encode(read_signature_file(sig_path, limits)).decode("ascii")
        facts = PackageFacts(
            info=info,
            filename=path.name,
            csize=hashing.size,
            md5=hashing.md5.hexdigest(),
            sha256=hashing.sha256.hexdigest(),
            pgpsig=pgpsig,
        )
        return Package(path, facts, tuple(sorted_paths(files)), buildinfo, pkginfo)
    except ReposealError as exc:
        raise exc.at(path) from None
