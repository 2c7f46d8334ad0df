"""Reading a proposed database in the worker, in time that follows the change, not the
repository.

Our databases are written as independently compressed chunks of whole entries plus a last
member with the end-of-archive blocks (see ``reposeal.alpm.chunked``). When the enclave
signs one, the worker notes each chunk: the sha256 of its compressed bytes and the package
names in it (the "chunk map", logged by hash with the records). The next transition
usually keeps all but one chunk byte for byte: those chunks have the parent's records
already, and only the new chunks are decompressed and read.

Sound because each chunk counted is self-contained: it was read on its own as whole tar
members, to its last byte, with no end-of-archive block inside; so the whole stream reads
as the chunks one after the other, and a chunk with the same bytes holds the same entries.
Anything else (a database repo-add wrote, a damaged chunk, a duplicate across chunks, a
bad entry) is read whole, the strict way, which also gives the precise error. Pure.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from reposeal.alpm import compression
from reposeal.alpm.limits import DEFAULT_LIMITS
from reposeal.alpm.syncdb import Entry, decompress_blob, entries_from_tars, entry_problems
from reposeal.alpm.tarformat import END_OF_ARCHIVE
from reposeal.enclave.records import entry_sha256, record_from_entry
from reposeal.errors import InvalidDatabaseError, ReposealError
from reposeal.policy.decide import PackageRecord

Known = Mapping[str, tuple[str, PackageRecord]]  # name -> (entry_sha256, its record)
ChunkMap = Mapping[str, Sequence[str]]  # sha256 of a compressed chunk -> package names


@dataclass(frozen=True)
class DbRead:
    records: dict[str, PackageRecord]
    entries: dict[str, str]  # name -> entry_sha256
    chunks: list[dict[str, Any]] | None  # this database's chunk map, if it is chunked


def chunk_map(doc: object, part: str = "db") -> dict[str, list[str]]:
    """A logged chunk map, as a lookup (malformed: empty, so everything is read). Logged
    as a list (the sync database's) or as {"db": list, "files": list}."""
    out: dict[str, list[str]] = {}
    if isinstance(doc, dict):
        doc = doc.get(part)
    elif part != "db":
        return out
    if isinstance(doc, list):
        for c in doc:
            if isinstance(c, dict) and isinstance(c.get("sha256"), str):
                names = c.get("names")
                if isinstance(names, list) and all(isinstance(n, str) for n in names):
                    out[c["sha256"]] = names
    return out


def read_db(blob: bytes, where: str, known: Known, parent_chunks: ChunkMap) -> DbRead:
    """Every entry of the database ``blob``, checked, as records (reusing ``known`` records
    for entries that are byte for byte the parent's)."""
    members = _split(blob, where, "database")
    if members is not None:
        chunked = _by_chunks(members, where, known, parent_chunks)
        if chunked is not None:
            return chunked
    records, entries = _whole(blob, where, known)
    return DbRead(records, entries, None)


def _split(blob: bytes, where: str, what: str) -> list[tuple[bytes, bytes]] | None:
    """A database file's compressed members, each with its tar bytes (None: one member, so
    not our chunked kind). An empty or undecodable file is an error naming ``where``."""
    if not blob:
        raise InvalidDatabaseError(f"{what} file is empty", path=where)
    try:
        kind = compression.detect(blob[:263])
        return compression.split_members(blob, kind, DEFAULT_LIMITS.max_db_unpacked_bytes)
    except ReposealError as exc:
        raise exc.at(where) from None


A = TypeVar("A")
B = TypeVar("B")


def _reuser(
    known: Mapping[str, tuple[A, B]], first: dict[str, A], second: dict[str, B]
) -> Callable[[Sequence[str]], bool]:
    """For ``_chunks``: take a parent chunk's names from ``known`` if it has them all."""

    def reuse(names: Sequence[str]) -> bool:
        if not all(n in known for n in names):
            return False
        for n in names:
            first[n], second[n] = known[n]
        return True

    return reuse


def _add(
    e: Entry, known: Known, records: dict[str, PackageRecord], entries: dict[str, str]
) -> list[str]:
    """Check one entry and add its record; return its problems."""
    entries[e.name] = digest = entry_sha256(e)
    seen = known.get(e.name)
    if seen is not None and seen[0] == digest:
        records[e.name] = seen[1]
        return []
    try:
        f = e.fields()
    except ReposealError as exc:
        return [exc.message]
    problems = entry_problems(e, f)
    if not problems:
        records[e.name] = record_from_entry(e, f)
    return problems


Read = tuple[dict[str, PackageRecord], dict[str, str]]


def _whole(blob: bytes, where: str, known: Known) -> Read:
    tar = decompress_blob(blob, where)
    records: dict[str, PackageRecord] = {}
    entries: dict[str, str] = {}
    problems: list[str] = []
    for e in entries_from_tars(tar, None, where, None).values():
        problems += _add(e, known, records, entries)
    if problems:
        raise ReposealError("database entries are invalid: " + "; ".join(problems[:5]), path=where)
    return records, entries


def _by_chunks(
    members: list[tuple[bytes, bytes]], where: str, known: Known, parent_chunks: ChunkMap
) -> DbRead | None:
    """Read chunk by chunk; None whenever the whole, strict read must decide."""
    records: dict[str, PackageRecord] = {}
    entries: dict[str, str] = {}

    def take(e: Entry) -> bool:
        return not _add(e, known, records, entries)

    reuse = _reuser(known, entries, records)
    chunks = _chunks(members, where, parent_chunks, reuse, take, files_within=False)
    return None if chunks is None else DbRead(records, entries, chunks)


def _chunks(
    members: list[tuple[bytes, bytes]],
    where: str,
    parent_chunks: ChunkMap,
    reuse: Callable[[Sequence[str]], bool],
    take: Callable[[Entry], bool],
    *,
    files_within: bool,
) -> list[dict[str, Any]] | None:
    """Walk a chunked database: a chunk the parent had (same compressed bytes) is handed to
    ``reuse`` by its names, any other is read and each entry handed to ``take``. Returns the
    chunk map, or None whenever the whole, strict read must decide (either callback saying
    no, a package twice, a chunk that is not whole members to its last byte)."""
    *body, (_, end) = members
    if end != END_OF_ARCHIVE:
        return None
    seen: set[str] = set()
    chunks: list[dict[str, Any]] = []
    for compressed, tar in body:
        digest = hashlib.sha256(compressed).hexdigest()
        names: Sequence[str] | None = parent_chunks.get(digest)
        if names is None or seen.intersection(names) or not reuse(names):
            try:
                found = entries_from_tars(
                    tar, None, where, None, end_optional=True, files_within=files_within
                )
            except ReposealError:
                return None
            raws = [e.raw_db for e in found.values()]
            if any(r is None for r in raws) or sum(len(r or b"") for r in raws) != len(tar):
                return None  # not whole members to the last byte (an end block inside?)
            if seen.intersection(found) or not all(take(e) for e in found.values()):
                return None
            names = list(found)
        seen.update(names)
        chunks.append({"sha256": digest, "names": sorted(names)})
    return chunks


@dataclass(frozen=True)
class FilesRead:
    """A files database: per package, its entry's ``entry_sha256`` (the desc, which must be
    the sync database's) and the sha256 of its ``files`` member (``files_sha256``)."""

    entries: dict[str, str]
    files: dict[str, str]
    chunks: list[dict[str, Any]] | None


def files_sha256(files: bytes | None) -> str:
    """What a files-database entry lists, byte for byte (no ``files`` member: none)."""
    return hashlib.sha256(files if files is not None else b"").hexdigest()


def read_files_db(
    blob: bytes, where: str, known: Mapping[str, tuple[str, str]], parent_chunks: ChunkMap
) -> FilesRead:
    """Every entry of the files database ``blob``; ``known``: name -> (entry_sha256,
    files_sha256) the parent's files database had, for names whose sync entry is unchanged.
    A chunk byte for byte the parent's keeps those; anything else is read."""
    members = _split(blob, where, "files database")
    entries: dict[str, str] = {}
    files: dict[str, str] = {}

    def take(e: Entry) -> bool:
        entries[e.name], files[e.name] = entry_sha256(e), files_sha256(e.files)
        return True

    if members is not None:
        reuse = _reuser(known, entries, files)
        chunks = _chunks(members, where, parent_chunks, reuse, take, files_within=True)
        if chunks is not None:
            return FilesRead(entries, files, chunks)
    entries.clear()
    files.clear()
    tar = decompress_blob(blob, where)
    for e in entries_from_tars(tar, None, where, None, files_within=True).values():
        take(e)
    return FilesRead(entries, files, None)
