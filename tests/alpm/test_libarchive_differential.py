"""reposeal's tar and decompression readers against libarchive (the library pacman reads
packages and databases with), on hostile archives: whatever reposeal accepts, libarchive
reads as the very same members (names, kinds, sizes, contents). Refusing is always allowed;
reading something else never is. Fuzzed with hypothesis over the corners where tar readers
are known to disagree."""

from __future__ import annotations

import io
import lzma
import tarfile
import zlib

import libarchive
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reposeal.alpm import compression
from reposeal.alpm.limits import DEFAULT_LIMITS
from reposeal.alpm.tarformat import TarReader
from reposeal.errors import ReposealError

BLOCK = 512


def _checksum(header: bytearray) -> None:
    header[148:156] = b" " * 8
    header[148:156] = f"{sum(header):06o}\0 ".encode()


def _header(name: bytes, size: int, kind: bytes, *, magic: bytes, prefix: bytes = b"",
            size_field: bytes | None = None) -> bytes:  # fmt: skip
    h = bytearray(BLOCK)
    h[0 : len(name[:100])] = name[:100]
    h[100:108] = b"0000644\0"
    h[108:116] = b"0000000\0"
    h[116:124] = b"0000000\0"
    h[124:136] = size_field if size_field is not None else f"{size:011o}\0".encode()
    h[136:148] = b"00000000000\0"
    h[156:157] = kind
    h[257 : 257 + len(magic)] = magic
    h[345 : 345 + len(prefix[:155])] = prefix[:155]
    _checksum(h)
    return bytes(h)


def _pad(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % BLOCK)


def _pax(records: dict[str, bytes]) -> bytes:
    out = b""
    for key, value in records.items():
        body = f" {key}=".encode() + value + b"\n"
        n = len(body) + 1
        while len(str(n)) + len(body) != n:
            n += 1
        out += str(n).encode() + body
    return out


POSIX, GNU, V7 = b"ustar\x0000", b"ustar  \x00", b""
NAMES = st.text(alphabet="ab/._-", min_size=1, max_size=12).map(lambda s: "x" + s)


@st.composite
def members(draw: st.DrawFn) -> bytes:
    """One member, with the naming and numbering tricks readers disagree on."""
    name = draw(NAMES)
    if draw(st.booleans()):
        name = "long/" * draw(st.integers(20, 40)) + name  # past the 100-byte name field
    kind = draw(st.sampled_from([b"0", b"5", b"2"]))
    data = draw(st.binary(max_size=700)) if kind == b"0" else b""
    target = draw(NAMES).encode() if kind == b"2" else b""
    benign = ["plain", "gnu", "pax", "prefix"]
    hostile = ["gnu+pax", "pax+gnu", "prefix-gnu-magic", "pax-twice", "global"]
    encode = draw(st.sampled_from(benign * 6 + hostile))
    odd_sizes = [b"  0000000010\0", b"0o0000001\0", b"+0000000001\0", b"0000001_23\0",
                 b"00000001x\0"]  # fmt: skip
    size_field = draw(st.sampled_from([None] * 20 + odd_sizes))
    raw = name.encode()
    out = b""
    header_name = raw
    magic = POSIX if encode != "prefix-gnu-magic" else GNU
    prefix = b""
    if encode in ("gnu", "gnu+pax", "pax+gnu"):
        long = _header(b"././@LongLink", len(raw) + 1, b"L", magic=GNU)
        gnu_part = long + _pad(raw + b"\0")
    else:
        gnu_part = b""
    if encode in ("pax", "gnu+pax", "pax+gnu", "pax-twice"):
        other = draw(NAMES).encode() if encode != "pax" else raw
        records = _pax({"path": other})
        pax_part = _header(b"PaxHeader/x", len(records), b"x", magic=POSIX) + _pad(records)
        if encode == "pax-twice":
            pax_part += pax_part
    else:
        pax_part = b""
    if encode == "pax+gnu":
        out += pax_part + gnu_part
    else:
        out += gnu_part + pax_part
    if encode == "global":
        records = _pax({"path": b"elsewhere"})
        out = _header(b"GlobalHead", len(records), b"g", magic=POSIX) + _pad(records) + out
    if encode.startswith("prefix") and b"/" in raw:
        cut = raw.rindex(b"/")
        prefix, header_name = raw[:cut], raw[cut + 1 :]
    header = _header(header_name, len(data), kind, magic=magic, prefix=prefix,
                     size_field=size_field)  # fmt: skip
    if kind == b"2":
        h = bytearray(header)
        h[157 : 157 + len(target)] = target
        _checksum(h)
        header = bytes(h)
    return out + header + _pad(data)


@st.composite
def archives(draw: st.DrawFn) -> tuple[bytes, str]:
    tar = b"".join(draw(st.lists(members(), min_size=1, max_size=4))) + b"\0" * 1024
    kind = draw(st.sampled_from(["tar", "gz", "gz-padded", "gz-zlib", "gz-split", "zst", "xz"]))
    if kind == "tar":
        return tar, compression.PLAIN
    if kind.startswith("gz"):
        half = draw(st.integers(0, len(tar)))
        first = compression.compress([tar[:half]], compression.GZIP)
        rest = tar[half:]
        tail = {
            "gz": compression.compress([rest], compression.GZIP),
            "gz-split": compression.compress([rest], compression.GZIP),
            "gz-padded": b"\0" * draw(st.integers(1, 600))
            + compression.compress([rest], compression.GZIP),
            "gz-zlib": zlib.compress(rest),
        }[kind]
        return first + tail, compression.GZIP
    if kind == "zst":
        return compression.compress([tar], compression.ZSTD), compression.ZSTD
    return lzma.compress(tar), compression.XZ


def ours(data: bytes, kind: str) -> list[tuple[str, str, int, bytes]] | None:
    """reposeal's reading, or None when it refuses."""
    try:
        stream = compression.open_stream(io.BytesIO(data), kind)
        reader = TarReader(stream, DEFAULT_LIMITS, max_total=1 << 30)
        out = []
        for m in reader.members(lambda _: True, 1 << 20):
            out.append((m.name.rstrip("/"), m.kind, m.size, reader.last_data or b""))
        return out
    except (ReposealError, *compression.DECOMPRESS_ERRORS):
        return None


def theirs(data: bytes) -> list[tuple[str, str, int, bytes]] | str:
    out = []
    try:
        with libarchive.memory_reader(data) as reader:
            for e in reader:
                kind = "dir" if e.isdir else "symlink" if e.issym else "file"
                body = b"".join(e.get_blocks()) if e.isfile else b""
                out.append((str(e.pathname).rstrip("/"), kind, len(body) if e.isfile else 0,
                            body))  # fmt: skip
    except libarchive.ArchiveError as exc:
        return f"error: {exc}"
    return out


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(archive=archives())
def test_what_reposeal_accepts_libarchive_reads_the_same(archive: tuple[bytes, str]) -> None:
    data, kind = archive
    mine = ours(data, kind)
    if mine is None:
        return  # refusing is always allowed
    seen = theirs(data)
    assert not isinstance(seen, str), f"reposeal read {mine}, libarchive failed: {seen}"
    assert mine == seen


@pytest.mark.parametrize(
    "case",
    ["gnu then pax", "pax then gnu", "pax twice", "global path", "prefix under gnu magic",
     "octal with 0o", "octal with +", "octal with _", "gzip then zlib", "gzip, NUL, gzip"],
)  # fmt: skip
def test_each_known_differential_is_refused(case: str) -> None:
    raw = b"x/file"
    data = b"abc"
    body = _header(raw, len(data), b"0", magic=POSIX) + _pad(data)
    if case == "gnu then pax":
        long = _header(b"././@LongLink", 7, b"L", magic=GNU) + _pad(raw + b"\0")
        records = _pax({"path": b"etc/evil"})
        tar = long + _header(b"PaxHeader", len(records), b"x", magic=POSIX) + _pad(records) + body
    elif case == "pax then gnu":
        records = _pax({"path": b"etc/evil"})
        long = _header(b"././@LongLink", 7, b"L", magic=GNU) + _pad(raw + b"\0")
        tar = _header(b"PaxHeader", len(records), b"x", magic=POSIX) + _pad(records) + long + body
    elif case == "pax twice":
        records = _pax({"path": b"etc/evil"})
        one = _header(b"PaxHeader", len(records), b"x", magic=POSIX) + _pad(records)
        tar = one + one + body
    elif case == "global path":
        records = _pax({"path": b"etc/evil"})
        tar = _header(b"Global", len(records), b"g", magic=POSIX) + _pad(records) + body
    elif case == "prefix under gnu magic":
        tar = _header(b"file", 3, b"0", magic=GNU, prefix=b"etc") + _pad(data)
    else:
        field = {"octal with 0o": b"0o000000003\0", "octal with +": b"+0000000003\0",
                 "octal with _": b"00000_00003\0"}.get(case)  # fmt: skip
        tar = _header(raw, 3, b"0", magic=POSIX, size_field=field) + _pad(data) if field else body
    tar += b"\0" * 1024
    kind = compression.PLAIN
    blob = tar
    if case == "gzip then zlib":
        blob, kind = compression.compress([tar[:512]], compression.GZIP) + zlib.compress(
            tar[512:]
        ), compression.GZIP  # fmt: skip
    elif case == "gzip, NUL, gzip":
        gz = compression.GZIP
        blob = compression.compress([tar[:512]], gz) + b"\0" * 8 + compression.compress(
            [tar[512:]], gz
        )  # fmt: skip
        kind = gz
    assert ours(blob, kind) is None, (case, ours(blob, kind), theirs(blob))
    assert tarfile  # Python's reader takes several of these: it is no reference here
