"""Compression formats of packages and databases, detected from the bytes, never the name."""

from __future__ import annotations

import bz2
import contextlib
import gzip
import lzma
import subprocess
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from backports.zstd import ZstdCompressor, ZstdDecompressor, ZstdError, ZstdFile

from reposeal.alpm.tarformat import Readable
from reposeal.errors import (
    CorruptArchiveError,
    LimitExceededError,
    ToolMissingError,
    TruncatedArchiveError,
    UnknownCompressionError,
)

GZIP, ZSTD, XZ, BZIP2, LZ4, PLAIN = "gz", "zst", "xz", "bz2", "lz4", "tar"
LRZIP, LZOP, LZW, LZIP = "lrz", "lzo", "Z", "lz"
SUFFIX_TO_KIND = {
    ".gz": GZIP,
    ".zst": ZSTD,
    ".xz": XZ,
    ".bz2": BZIP2,
    ".lz4": LZ4,
    ".lrz": LRZIP,
    ".lzo": LZOP,
    ".Z": LZW,
    ".lz": LZIP,
    "": PLAIN,
}


@dataclass(frozen=True)
class _Tool:
    """A compression no well-kept Python library covers: done by the program repo-add
    itself runs (makepkg's compress.sh), from the Debian package named."""

    package: str
    pack: tuple[str, ...]
    unpack: tuple[str, ...]


# the rest of what repo-add 6.0.2 accepts for a database (libarchive reads each of them)
EXTERNAL = {
    LRZIP: _Tool("lrzip", ("lrzip", "-q"), ("lrzip", "-d", "-q")),
    LZOP: _Tool("lzop", ("lzop", "-q", "-c"), ("lzop", "-d", "-q", "-c")),
    LZW: _Tool("ncompress", ("compress", "-c", "-f"), ("compress", "-d", "-c")),
    LZIP: _Tool("lzip", ("lzip", "-c", "-f"), ("lzip", "-d", "-c")),
}
_TOOL_TIMEOUT = 600.0

# The exceptions each decompressor raises on damaged input.
DECOMPRESS_ERRORS: tuple[type[Exception], ...] = (
    zlib.error,
    gzip.BadGzipFile,
    lzma.LZMAError,
    ZstdError,
    OSError,
    EOFError,
    RuntimeError,  # lz4.frame's
)


MAGIC = (  # the first bytes of each format (a plain tar is known by its header instead)
    (b"\x28\xb5\x2f\xfd", ZSTD),
    (b"\x1f\x8b", GZIP),
    (b"\xfd7zXZ\x00", XZ),
    (b"BZh", BZIP2),
    (b"\x04\x22\x4d\x18", LZ4),
    (b"LRZI", LRZIP),
    (b"\x89LZO\x00\r\n\x1a\n", LZOP),
    (b"\x1f\x9d", LZW),
    (b"LZIP", LZIP),
)


def detect(head: bytes) -> str:
    """Name the compression of a stream from its first bytes."""
    for magic, kind in MAGIC:
        if head.startswith(magic):
            return kind
    if len(head) >= 263 and head[257:262] == b"ustar":
        return PLAIN
    raise UnknownCompressionError(
        "not a tar archive compressed with zstd, gzip, xz, bzip2, lz4, lrzip, lzop, compress "
        "or lzip (unknown or damaged header)"
    )


class GzipMembers:
    """A streaming reader of concatenated gzip members, and nothing else: what follows a
    member must be another gzip member. (Python's gzip module skips NUL padding between
    members and zlib's auto-detection also takes a zlib stream after one; libarchive, which
    pacman reads with, stops at both, so reading past them would see what pacman does not.)"""

    def __init__(self, raw: BinaryIO, block: int = 1 << 16) -> None:
        self._raw, self._block = raw, block
        self._d = zlib.decompressobj(31)
        self._pending = b""  # compressed bytes read but not yet fed
        self._out = b""
        self._done = False

    def _next_member(self, rest: bytes) -> None:
        while len(rest) < 2:
            more = self._raw.read(self._block)
            if not more:
                break
            rest += more
        if not rest:
            self._done = True
            return
        if not rest.startswith(b"\x1f\x8b"):
            raise CorruptArchiveError(
                "bytes after a gzip member are not another gzip member (padding or another "
                "format): pacman's libarchive stops there, so they are refused"
            )
        self._d = zlib.decompressobj(31)
        self._pending = rest

    def _fill(self, want: int) -> None:
        while len(self._out) < want and not self._done:
            data = self._pending or self._raw.read(self._block)
            self._pending = b""
            if not data:
                if not self._d.eof:
                    raise TruncatedArchiveError("compressed data ends early (truncated file?)")
                self._done = True
                break
            self._out += self._d.decompress(data, max(want - len(self._out), 1 << 16))
            self._pending = self._d.unconsumed_tail
            if self._d.eof:
                self._next_member(self._d.unused_data)

    def read(self, n: int = -1, /) -> bytes:
        try:
            if n < 0:
                while not self._done:
                    self._fill(len(self._out) + (1 << 20))
                out, self._out = self._out, b""
                return out
            self._fill(n)
        except zlib.error as exc:
            raise CorruptArchiveError(f"damaged gzip data ({exc})") from None
        out, self._out = self._out[:n], self._out[n:]
        return out


def open_stream(raw: BinaryIO, kind: str) -> Readable:
    """Wrap a raw stream in a streaming decompressor for ``kind``."""
    if kind == ZSTD:
        return ZstdFile(raw, "rb")
    if kind == GZIP:
        return GzipMembers(raw)
    if kind == XZ:
        return lzma.LZMAFile(raw, "rb")
    if kind == BZIP2:
        return bz2.BZ2File(raw, "rb")
    if kind == LZ4:
        import lz4.frame  # (loaded only for the rare lz4 database)

        stream: Readable = lz4.frame.LZ4FrameFile(raw, "rb")
        return stream
    if kind in EXTERNAL:
        raise UnknownCompressionError(
            f"reposeal reads {kind}-compressed databases, not packages: rebuild the package "
            "with makepkg's default compression (PKGEXT='.pkg.tar.zst')"
        )
    return raw


def decompress(data: bytes, kind: str, limit: int) -> bytes:
    """Decompress a whole (multi-member) buffer, refusing output larger than ``limit``."""
    if kind == PLAIN:
        return data
    if kind in EXTERNAL:
        return _run_tool(EXTERNAL[kind], "unpack", data, limit)
    out: list[bytes] = []
    for member, chunk in _members(data, kind, limit):
        out.append(chunk)
        rest = data[len(member) :]
        data = rest
        if kind == GZIP and rest and not rest.startswith(b"\x1f\x8b"):
            raise CorruptArchiveError(
                "bytes after a gzip member are not another gzip member (padding or "
                "another format): pacman's libarchive stops there, so they are refused"
            )
    return b"".join(out)


def split_members(data: bytes, kind: str, limit: int) -> list[tuple[bytes, bytes]] | None:
    """A multi-member gzip or zstd buffer as (compressed member, its output) pairs, refusing
    more than ``limit`` bytes of output in all; None for other formats or padded members."""
    if kind not in (GZIP, ZSTD):
        return None
    out: list[tuple[bytes, bytes]] = []
    for member, chunk in _members(data, kind, limit):
        out.append((member, chunk))
        data = data[len(member) :]
        if data[:1] == b"\0":
            return None  # padding between members: not ours to take apart
    return out


def _members(data: bytes, kind: str, limit: int) -> Iterator[tuple[bytes, bytes]]:
    """Each compressed member of ``data`` with its output, in order, until the bytes end
    (the caller may stop early); more than ``limit`` bytes of output in all, a truncated
    member or damaged data raise a typed error."""
    produced = 0
    rest = data
    try:
        while rest:
            dec = _decompressor(kind)
            chunk = dec.decompress(rest, limit + 1 - produced)
            produced += len(chunk)
            if produced > limit:
                raise LimitExceededError(f"decompresses to more than {limit} bytes")
            if not dec.eof:
                if dec.needs_input:
                    raise TruncatedArchiveError("compressed data ends early (truncated file?)")
                raise LimitExceededError(f"decompresses to more than {limit} bytes")
            unused = dec.unused_data or b""  # lz4's is None at the end
            yield rest[: len(rest) - len(unused)], chunk
            rest = unused
    except DECOMPRESS_ERRORS as exc:
        raise CorruptArchiveError(f"damaged {kind} data: {exc}") from None


class _Decompressor:
    """The subset of the stdlib decompressor objects' interface we use."""

    eof: bool
    needs_input: bool
    unused_data: bytes

    def decompress(self, data: bytes, max_length: int = -1) -> bytes:
        raise NotImplementedError


class _Zlib(_Decompressor):
    def __init__(self) -> None:
        self._d = zlib.decompressobj(31)  # gzip only: 47 would take a zlib stream too
        self._fed = False

    def decompress(self, data: bytes, max_length: int = -1) -> bytes:
        if self._fed:
            out = self._d.decompress(self._d.unconsumed_tail, max(max_length, 0))
        else:
            self._fed = True
            out = self._d.decompress(data, max(max_length, 0))
        self.eof = self._d.eof
        self.needs_input = not self._d.eof and not self._d.unconsumed_tail
        self.unused_data = self._d.unused_data
        return out


def _decompressor(kind: str) -> _Decompressor:
    if kind == GZIP:
        return _Zlib()
    if kind == ZSTD:
        return ZstdDecompressor()  # type: ignore[return-value]
    if kind == XZ:
        return lzma.LZMADecompressor()  # type: ignore[return-value]
    if kind == BZIP2:
        return bz2.BZ2Decompressor()  # type: ignore[return-value]
    if kind == LZ4:
        import lz4.frame

        lz4d: _Decompressor = lz4.frame.LZ4FrameDecompressor()
        return lz4d
    raise UnknownCompressionError(f"unknown compression {kind!r}")


def compress(chunks: list[bytes], kind: str) -> bytes:
    """Compress as repo-add would (gzip -6 -n, zstd -3, xz -6, bzip2 -9), in memory."""
    if kind == GZIP:
        c = zlib.compressobj(6, zlib.DEFLATED, 31)
        return b"".join([*(c.compress(x) for x in chunks), c.flush()])
    if kind == ZSTD:
        z = ZstdCompressor(level=3)
        return b"".join([*(z.compress(x) for x in chunks), z.flush()])
    if kind == XZ:
        x = lzma.LZMACompressor(preset=6)
        return b"".join([*(x.compress(c) for c in chunks), x.flush()])
    if kind == BZIP2:
        b = bz2.BZ2Compressor(9)
        return b"".join([*(b.compress(c) for c in chunks), b.flush()])
    if kind == LZ4:
        import lz4.frame

        return bytes(lz4.frame.compress(b"".join(chunks)))
    if kind == PLAIN:
        return b"".join(chunks)
    if kind in EXTERNAL:
        return _run_tool(EXTERNAL[kind], "pack", b"".join(chunks), 1 << 40)
    raise UnknownCompressionError(f"unknown compression {kind!r}")


def _run_tool(tool: _Tool, how: str, data: bytes, limit: int) -> bytes:
    """Pipe ``data`` through ``tool`` and take at most ``limit`` bytes of its output (a bomb
    is stopped as it grows, not after)."""
    argv = list(tool.pack if how == "pack" else tool.unpack)
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"},
        )
    except FileNotFoundError:
        raise ToolMissingError(
            f"{argv[0]} is needed for this compression: install Debian's {tool.package}"
        ) from None
    if proc.stdin is None or proc.stdout is None or proc.stderr is None:  # (Popen's typing)
        raise ToolMissingError(f"{argv[0]} could not be started with pipes")
    stdin, stderr = proc.stdin, proc.stderr

    def feed() -> None:
        try:
            stdin.write(data)
        except BrokenPipeError:
            pass  # it stopped reading: its exit status says why
        finally:
            with contextlib.suppress(BrokenPipeError):
                stdin.close()

    errors: list[bytes] = []
    feeder = threading.Thread(target=feed, daemon=True)
    collector = threading.Thread(target=lambda: errors.append(stderr.read()), daemon=True)
    feeder.start()
    collector.start()
    out, produced = [], 0
    while chunk := proc.stdout.read(1 << 20):
        produced += len(chunk)
        if produced > limit:
            proc.kill()
            proc.wait()
            raise LimitExceededError(f"decompresses to more than {limit} bytes")
        out.append(chunk)
    try:
        proc.wait(_TOOL_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise CorruptArchiveError(f"{argv[0]} did not finish in {_TOOL_TIMEOUT:.0f} s") from None
    feeder.join()
    collector.join()
    if proc.returncode != 0:
        said = b"".join(errors).decode(errors="replace").strip().splitlines()
        reason = said[-1] if said else f"exit status {proc.returncode}"
        if how == "pack":
            raise ToolMissingError(f"{argv[0]} could not compress: {reason}")
        raise CorruptArchiveError(f"damaged {tool.package} data ({argv[0]}: {reason})")
    return b"".join(out)


def error_from(exc: Exception) -> CorruptArchiveError | TruncatedArchiveError:
    """Map a streaming decompressor's exception to our typed error."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, EOFError) or "end-of-stream" in text or "ended before" in text:
        return TruncatedArchiveError(f"archive is truncated ({text})")
    return CorruptArchiveError(f"damaged compressed data ({text})")
