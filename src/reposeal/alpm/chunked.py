"""Database archives as independently compressed chunks, so an update recompresses one.

A gzip file may hold several members and a zstd file several frames; decompressed, they are
one stream. We cut the tar stream at entry boundaries (every ``CHUNK_ENTRIES`` entries) and
compress each run on its own, plus a last tiny member with the end-of-archive blocks. pacman
(libarchive), bsdtar, gzip, zstd and Python all read the result as one ordinary archive.

An index (first/last entry, count, and byte range of each chunk, bound to the archive by its
sha256) lets the next update decompress, check and rewrite only the chunks a change touches
and copy every other chunk's compressed bytes as they are. Without a valid index, callers
fall back to reading everything. Pure: bytes in, bytes out.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from reposeal.alpm import compression
from reposeal.alpm.limits import DEFAULT_LIMITS, Limits
from reposeal.alpm.syncdb import Entry, archive_chunks, entries_from_tars
from reposeal.alpm.tarformat import END_OF_ARCHIVE
from reposeal.errors import InvalidDatabaseError, ReposealError

CHUNK_ENTRIES = 256
# ... or fewer, once a run's entries hold this many bytes: an update recompresses and
# re-reads whole chunks, so a chunk of packages with long file lists is cut sooner
CHUNK_BYTES = 96 << 10
INDEX_VERSION = 1
CHUNKABLE = frozenset({compression.GZIP, compression.ZSTD, compression.PLAIN})
_PARTS = ("db", "files")


@dataclass(frozen=True, slots=True)
class Chunk:
    """One compressed run of entries, in both the sync and the files archive."""

    first: str  # dirname of its first entry (C-locale order)
    last: str
    count: int
    db: bytes  # compressed tar blocks of these entries, sync database
    files: bytes  # the same entries, files database
    sha256: tuple[str, str] = ("", "")  # of db and files, once known (an update reuses them)

    def blob(self, part: str) -> bytes:
        return self.db if part == "db" else self.files

    def digest(self, part: str) -> str:
        known = self.sha256[0 if part == "db" else 1]
        return known or hashlib.sha256(self.blob(part)).hexdigest()


def _sort_key(e: Entry) -> bytes:
    return e.dirname.encode()


def _runs(ordered: Sequence[Entry], size: int, max_bytes: int) -> Iterable[Sequence[Entry]]:
    """Cut sorted entries into runs of at most ``size`` entries and about ``max_bytes``."""
    start, held = 0, 0
    for i, e in enumerate(ordered):
        held += len(e.desc) + len(e.files or b"")
        if i + 1 - start == size or held >= max_bytes:
            yield ordered[start : i + 1]
            start, held = i + 1, 0
    if start < len(ordered):
        yield ordered[start:]


def make_chunks(
    entries: Iterable[Entry], kind: str, size: int = CHUNK_ENTRIES, max_bytes: int = CHUNK_BYTES
) -> list[Chunk]:
    """Compress sorted entries into chunks of at most ``size`` entries and about
    ``max_bytes`` of entry text (no end-of-archive)."""
    out = []
    for run in _runs(sorted(entries, key=_sort_key), size, max_bytes):
        blobs = [
            compression.compress(archive_chunks(run, files_db, end=False), kind)
            for files_db in (False, True)
        ]
        digests = (hashlib.sha256(blobs[0]).hexdigest(), hashlib.sha256(blobs[1]).hexdigest())
        out.append(Chunk(run[0].dirname, run[-1].dirname, len(run), blobs[0], blobs[1], digests))
    return out


def end_member(kind: str) -> bytes:
    return compression.compress([END_OF_ARCHIVE], kind)


def assemble(chunks: Sequence[Chunk], part: str, kind: str) -> bytes:
    """The complete archive file for ``part`` ("db" or "files")."""
    return b"".join([*(c.blob(part) for c in chunks), end_member(kind)])


def index_document(
    chunks: Sequence[Chunk], kind: str, archives: dict[str, bytes]
) -> dict[str, Any]:
    """The index of an archive pair we just assembled (``archives``: part -> bytes)."""
    doc: dict[str, Any] = {
        "version": INDEX_VERSION,
        "compression": kind,
        "chunks": [{"first": c.first, "last": c.last, "count": c.count} for c in chunks],
    }
    for part in _PARTS:
        doc[part] = {
            "sha256": hashlib.sha256(archives[part]).hexdigest(),
            "lengths": [len(c.blob(part)) for c in chunks],
            "chunks": [c.digest(part) for c in chunks],
        }
    return doc


def _require(holds: bool) -> None:
    """A check on an index that came from outside: not an assert (``python -O`` drops those),
    a ValueError its callers turn into "this index describes nothing"."""
    if not holds:
        raise ValueError("the index does not hold")


def chunks_from_index(doc: object, kind: str, archives: dict[str, bytes]) -> list[Chunk] | None:
    """Rebuild the chunk list from an index and the archive bytes; None if anything is off.

    Never trusted blindly: the index must describe exactly these bytes (each chunk's
    sha256, in order, covering them completely: so the whole archive's too); the entries
    inside chunks are re-read by whoever uses them.
    """
    try:
        if not isinstance(doc, dict):
            return None
        if doc.get("version") != INDEX_VERSION or doc.get("compression") != kind:
            return None
        meta = doc["chunks"]
        _require(isinstance(meta, list))
        split: dict[str, list[tuple[bytes, str]]] = {}
        for part in _PARTS:
            blob = archives[part]
            info = doc[part]
            lengths, digests = info["lengths"], info["chunks"]
            _require(len(lengths) == len(meta) == len(digests))
            pieces, pos = [], 0
            for n, digest in zip(lengths, digests, strict=True):
                _require(isinstance(n, int) and n > 0 and isinstance(digest, str))
                piece = blob[pos : pos + n]
                if hashlib.sha256(piece).hexdigest() != digest:
                    return None
                pieces.append((piece, digest))
                pos += n
            if blob[pos:] != end_member(kind):
                return None
            split[part] = pieces
        chunks = []
        previous = b""
        for i, m in enumerate(meta):
            first, last, count = m["first"], m["last"], m["count"]
            _require(isinstance(first, str) and isinstance(last, str) and isinstance(count, int))
            _require(count > 0 and previous < first.encode() <= last.encode())
            previous = last.encode()
            (db, db_sha), (files, files_sha) = split["db"][i], split["files"][i]
            chunks.append(Chunk(first, last, count, db, files, (db_sha, files_sha)))
        return chunks
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def affected(chunks: Sequence[Chunk], names: Iterable[str]) -> list[int]:
    """Indexes of the chunks that may hold, or must receive, an entry of any of ``names``.

    All entries of a package ``foo`` have dirnames starting with ``foo-``, a contiguous range
    in C-locale order. A name some chunk holds is rewritten there; a new name that falls
    between two chunks goes into the smaller of them (a neighbour holding one package with
    thirty thousand files is not recompressed for it).
    """
    firsts = [c.first.encode() for c in chunks]
    hit: set[int] = set()
    for name in names:
        lo, hi = (name + "-").encode(), (name + "-").encode() + b"\xff"
        held = {i for i, c in enumerate(chunks) if c.first.encode() <= hi and c.last.encode() >= lo}
        hit |= held
        if held or not chunks:
            continue
        i = bisect.bisect_right(firsts, lo) - 1  # the last chunk starting before the name
        if i < 0 or chunks[i].last.encode() > lo or i + 1 == len(chunks):
            hit.add(max(i, 0))  # before them all, inside chunk i's range, or after them all
        else:
            hit.add(min((i, i + 1), key=lambda k: len(chunks[k].files)))
    return sorted(hit)


def rechunk(
    chunks: Sequence[Chunk],
    touched: Sequence[int],
    new_entries: Iterable[Entry],
    kind: str,
    size: int = CHUNK_ENTRIES,
) -> list[Chunk]:
    """Replace the ``touched`` chunks by chunks built from ``new_entries``.

    ``new_entries`` are all entries that belong where the touched chunks were (their old
    content after the change). Untouched chunks keep their compressed bytes.
    """
    touched_set = set(touched)
    # runs of adjacent touched chunks, each bounded by untouched neighbours
    groups: list[list[int]] = []
    for i in sorted(touched_set):
        if groups and groups[-1][-1] == i - 1:
            groups[-1].append(i)
        else:
            groups.append([i])
    bounds = []
    for g in groups:
        upper = chunks[g[-1] + 1].first.encode() if g[-1] + 1 < len(chunks) else None
        bounds.append(upper)
    buckets: list[list[Entry]] = [[] for _ in groups]
    for e in new_entries:
        key = _sort_key(e)
        for gi, upper in enumerate(bounds):
            if upper is None or key < upper:
                buckets[gi].append(e)
                break
    out: list[Chunk] = []
    gi = 0
    i = 0
    while i < len(chunks):
        if gi < len(groups) and i == groups[gi][0]:
            out += make_chunks(buckets[gi], kind, size)
            i = groups[gi][-1] + 1
            gi += 1
        else:
            out.append(chunks[i])
            i += 1
    if not chunks:
        out = make_chunks(new_entries, kind, size)
    return out


def read_chunks(
    chunks: Sequence[Chunk], kind: str, where: dict[str, str], limits: Limits = DEFAULT_LIMITS
) -> dict[str, Entry]:
    """Decompress and strictly read the entries of some chunks (both archives)."""
    tars = {}
    for part in _PARTS:
        try:
            tars[part] = b"".join(
                compression.decompress(c.blob(part), kind, limits.max_db_unpacked_bytes)
                for c in chunks
            )
        except ReposealError as exc:
            raise exc.at(where[part]) from None
    entries = entries_from_tars(
        tars["db"], tars["files"], where["db"], where["files"], limits, end_optional=True
    )
    if len(entries) != sum(c.count for c in chunks):
        raise InvalidDatabaseError("database index does not match its chunks", path=where["db"])
    return entries


def pieces(doc: object, archives: dict[str, bytes]) -> dict[str, bytes]:
    """The compressed chunks of archives an index describes, by their sha256 (empty if the
    index does not describe exactly these bytes): what a reader that holds the parent needs
    to rebuild the next archives from the chunks that changed."""
    out: dict[str, bytes] = {}
    try:
        if not isinstance(doc, dict):
            return {}
        for part in _PARTS:
            blob, info = archives[part], doc[part]
            if hashlib.sha256(blob).hexdigest() != info["sha256"]:
                return {}
            pos = 0
            for n, digest in zip(info["lengths"], info["chunks"], strict=True):
                piece = blob[pos : pos + n]
                if hashlib.sha256(piece).hexdigest() != digest:
                    return {}
                out[digest] = piece
                pos += n
    except (KeyError, TypeError, ValueError):
        return {}
    return out


def rebuild(doc: object, part: str, pieces_by_sha: dict[str, bytes], kind: str) -> bytes:
    """The archive ``part`` an index describes, from chunks by sha256 (raises KeyError for a
    chunk that is not at hand)."""
    if not isinstance(doc, dict):
        raise KeyError("index")
    return b"".join([*(pieces_by_sha[d] for d in doc[part]["chunks"]), end_member(kind)])
