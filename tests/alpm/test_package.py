"""Reading packages: every format, and every kind of hostile input gets a typed error."""

from __future__ import annotations

import contextlib
import tarfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reposeal.alpm import compression
from reposeal.alpm.limits import Limits
from reposeal.alpm.package import read_package
from reposeal.alpm.synthetic import package_bytes, pkginfo_text, write_package
from reposeal.errors import (
    CorruptArchiveError,
    InputError,
    InvalidNameError,
    InvalidPackageError,
    InvalidSignatureFileError,
    InvalidVersionError,
    LimitExceededError,
    TruncatedArchiveError,
    UnknownCompressionError,
    UnsafeArchiveError,
)
from tests.alpm.hostile import file, member, package

KINDS = [
    compression.GZIP,
    compression.ZSTD,
    compression.XZ,
    compression.BZIP2,
    compression.LZ4,
    compression.PLAIN,
]


def put(tmp_path: Path, data: bytes, name: str = "evil-1.0-1-any.pkg.tar") -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


@pytest.mark.parametrize("kind", KINDS)
def test_reads_every_compression(tmp_path: Path, kind: str) -> None:
    files = {"usr/bin/tool": b"#!/bin/sh\n", "usr/share/doc/tool/README": b"x" * 5000}
    path = write_package(tmp_path, "tool", "2:1.5-3", "x86_64", kind=kind, files=files)
    pkg = read_package(path)
    assert pkg.facts.info.name == "tool"
    assert pkg.facts.info.version == "2:1.5-3"
    assert pkg.facts.info.arch == "x86_64"
    assert pkg.facts.csize == path.stat().st_size
    assert pkg.files == (
        "usr/",
        "usr/bin/",
        "usr/bin/tool",
        "usr/share/",
        "usr/share/doc/",
        "usr/share/doc/tool/",
        "usr/share/doc/tool/README",
    )


def test_every_pkginfo_field_is_parsed(tmp_path: Path) -> None:
    extra = [
        ("license", "MIT"),
        ("license", "Apache-2.0"),
        ("group", "g1"),
        ("replaces", "old"),
        ("conflict", "c"),
        ("provides", "p=1"),
        ("backup", "etc/x.conf"),
        ("optdepend", "bar: for   extra   things"),
        ("makedepend", "m"),
        ("checkdepend", "ck"),
        ("xdata", "pkgtype=pkg"),
    ]
    info = pkginfo_text("full", "1.0-1", depends=["a>=1", "b"], extra=extra)
    p = put(tmp_path, package(pkginfo=info), "full-1.0-1-any.pkg.tar")
    i = read_package(p).facts.info
    assert i.licenses == ("MIT", "MIT", "Apache-2.0")
    assert i.depends == ("a>=1", "b")
    assert i.optdepends == ("bar: for extra things",)  # whitespace folded as repo-add does
    assert (i.groups, i.replaces, i.conflicts, i.provides) == (("g1",), ("old",), ("c",), ("p=1",))
    assert (i.backup, i.makedepends, i.checkdepends, i.xdata) == (
        ("etc/x.conf",),
        ("m",),
        ("ck",),
        ("pkgtype=pkg",),
    )


HOSTILE = {
    "no pkginfo": (package(file("usr/x", b"x"), pkginfo=b""), InvalidPackageError, "no .PKGINFO"),
    "duplicate pkginfo": (
        package(file(".PKGINFO", pkginfo_text("b", "1-1"))),
        UnsafeArchiveError,
        "duplicate",
    ),
    "duplicate file": (
        package(file("usr/x", b"1"), file("usr/x", b"2")),
        UnsafeArchiveError,
        "duplicate",
    ),
    "dotdot": (package(file("usr/../../etc/passwd", b"x")), UnsafeArchiveError, "traversal"),
    "absolute": (package(file("/etc/passwd", b"x")), UnsafeArchiveError, "unsafe"),
    "newline name": (package(file("usr/a\nb", b"x")), UnsafeArchiveError, "unsafe"),
    "device": (package(member("dev/sda", tarfile.BLKTYPE)), UnsafeArchiveError, "unsupported"),
    "char device": (
        package(member("dev/null", tarfile.CHRTYPE)),
        UnsafeArchiveError,
        "unsupported",
    ),
    "non-utf8 pkginfo": (
        package(pkginfo=b"pkgname = caf\xe9\npkgver = 1-1\narch = any\n"),
        InvalidPackageError,
        "UTF-8",
    ),
    "bad name": (package(pkginfo=pkginfo_text("Evil Name", "1.0-1")), InvalidNameError, "name"),
    "no pkgrel": (package(pkginfo=pkginfo_text("evil", "1.0")), InvalidVersionError, "version"),
    "slash version": (
        package(pkginfo=pkginfo_text("evil", "1/0-1")),
        InvalidVersionError,
        "version",
    ),
    "twice pkgname": (
        package(pkginfo=pkginfo_text("evil", "1-1") + b"pkgname = other\n"),
        InvalidPackageError,
        "twice",
    ),
    "no arch": (package(pkginfo=b"pkgname = evil\npkgver = 1-1\n"), InvalidPackageError, "arch"),
    "control chars": (
        package(pkginfo=pkginfo_text("evil", "1-1") + b"pkgdesc = a\x1bb\n"),
        InvalidPackageError,
        "control",
    ),
    "garbage": (
        b"PK\x03\x04 this is a zip file" + bytes(300),
        UnknownCompressionError,
        "not a tar",
    ),
    "empty": (b"", UnknownCompressionError, "not a tar"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_packages_get_typed_errors(tmp_path: Path, case: str) -> None:
    data, error, words = HOSTILE[case]
    path = put(tmp_path, data)
    with pytest.raises(error, match=words) as info:
        read_package(path)
    assert info.value.path == path  # the message names the file


def test_non_utf8_member_name(tmp_path: Path) -> None:
    raw = bytearray(package(file("usr/abc", b"x")))
    pos = raw.index(b"usr/abc")
    raw[pos + 4] = 0xFF
    # fix the header checksum so only the name is wrong
    start = pos - pos % 512
    hdr = raw[start : start + 512]
    hdr[148:156] = b"        "
    raw[start + 148 : start + 156] = b"%06o\0 " % sum(hdr)
    with pytest.raises(UnsafeArchiveError, match="UTF-8"):
        read_package(put(tmp_path, bytes(raw)))


@pytest.mark.parametrize("kind", KINDS)
def test_truncated_archives(tmp_path: Path, kind: str) -> None:
    files = {f"usr/share/f{i}": bytes(range(256)) * 40 for i in range(20)}
    data = package_bytes("big", "1-1", kind=kind, files=files)
    path = put(tmp_path, data[: len(data) * 2 // 3])
    with pytest.raises((TruncatedArchiveError, CorruptArchiveError)):
        read_package(path)


def test_absurd_declared_size_is_refused_before_reading(tmp_path: Path) -> None:
    info = tarfile.TarInfo("usr/huge")
    info.size = 1 << 50  # GNU base-256 size field; tarfile writes the header, no data
    with pytest.raises(LimitExceededError, match="tar bomb"):
        read_package(put(tmp_path, package((info, None))))


def test_too_many_members(tmp_path: Path) -> None:
    files = {f"usr/f{i}": b"" for i in range(50)}
    path = put(tmp_path, package_bytes("many", "1-1", kind="tar", files=files))
    with pytest.raises(LimitExceededError, match="members"):
        read_package(path, limits=Limits(max_members=20))


def test_oversized_pkginfo(tmp_path: Path) -> None:
    big = pkginfo_text("evil", "1-1") + b"pkgdesc = " + b"x" * (2 << 20) + b"\n"
    with pytest.raises(LimitExceededError):
        read_package(put(tmp_path, package(pkginfo=big)))


def test_bad_header_checksum(tmp_path: Path) -> None:
    raw = bytearray(package(file("usr/abc", b"x")))
    raw[raw.index(b"usr/abc") + 4] ^= 0x20  # a byte of a header's name
    with pytest.raises(CorruptArchiveError, match="checksum"):
        read_package(put(tmp_path, bytes(raw)))


def test_wrong_file_name_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidNameError):
        read_package(put(tmp_path, package(), "evil.zip"))
    with pytest.raises(InputError, match="not found"):
        read_package(tmp_path / "nope-1-1-any.pkg.tar.zst")


def test_package_signature_is_embedded_only_with_include_sigs(tmp_path: Path) -> None:
    path = write_package(tmp_path, "signed", "1-1")
    path.with_name(path.name + ".sig").write_bytes(b"\x88\x75binary-signature")
    assert read_package(path).facts.pgpsig == ""
    assert read_package(path, include_sig=True).facts.pgpsig == "iHViaW5hcnktc2lnbmF0dXJl"
    path.with_name(path.name + ".sig").write_bytes(b"-----BEGIN PGP SIGNATURE-----\n")
    with pytest.raises(InvalidSignatureFileError, match="armored"):
        read_package(path, include_sig=True)
    path.with_name(path.name + ".sig").write_bytes(b"x" * 20000)
    with pytest.raises(InvalidSignatureFileError, match="larger"):
        read_package(path, include_sig=True)


_VALID = package_bytes(
    "fuzz", "1.0-1", kind="tar", files={"usr/a": b"hello", "usr/b/c": b"x" * 700}
)


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.lists(st.tuples(st.integers(0, len(_VALID) - 1), st.integers(0, 255)), max_size=8),
    st.integers(0, len(_VALID)),
)
def test_fuzzed_tar_never_escapes_as_an_untyped_error(
    tmp_path_factory: pytest.TempPathFactory, flips: list[tuple[int, int]], cut: int
) -> None:
    raw = bytearray(_VALID[:cut] if cut > 0 else _VALID)
    for pos, val in flips:
        if pos < len(raw):
            raw[pos] = val
    path = put(tmp_path_factory.mktemp("fz"), bytes(raw), "fuzz-1.0-1-any.pkg.tar")
    with contextlib.suppress(InputError):
        read_package(path)


@pytest.mark.parametrize(
    "kind", [compression.GZIP, compression.ZSTD, compression.XZ, compression.LZ4]
)
@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_fuzzed_compressed_streams(
    tmp_path_factory: pytest.TempPathFactory, kind: str, data: st.DataObject
) -> None:
    valid = package_bytes("fuzz", "1.0-1", kind=kind)
    raw = bytearray(valid)
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    path = put(tmp_path_factory.mktemp("fz"), bytes(raw), f"fuzz-1.0-1-any.pkg.tar.{kind}")
    with contextlib.suppress(InputError):
        read_package(path)


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "evil-1.0-1-any.pkg.tar.zst"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="not a regular file"):
        read_package(fifo)
    os.mkfifo(tmp_path / "r.db.tar.gz")
    from reposeal.alpm.syncdb import read_entries

    with pytest.raises(InputError, match="not a regular file"):
        read_entries(tmp_path / "r.db.tar.gz", None)


@pytest.mark.parametrize(
    "kind", [compression.GZIP, compression.ZSTD, compression.XZ, compression.BZIP2, compression.LZ4]
)
def test_decompression_bombs_stop_at_the_limit(kind: str) -> None:
    bomb = compression.compress([bytes(64 << 20)], kind)  # 64 MiB of zeros, tiny compressed
    assert len(bomb) < (1 << 20)
    with pytest.raises(LimitExceededError):
        compression.decompress(bomb, kind, 1 << 20)
