"""Sync (``NAME.db.tar.*``) and files (``NAME.files.tar.*``) databases: read and write.

An archive holds one directory per package, ``NAME-VERSION/``, with ``desc`` (and, in the
files database, ``files``). Reading keeps the exact tar blocks of every entry so that an
update rewrites only what changed; this is what makes adding one package to a 10,000-package
database cheap.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from reposeal.alpm import compression
from reposeal.alpm.desc import PackageFacts, parse_desc, render_desc, render_files, single
from reposeal.alpm.limits import DEFAULT_LIMITS, Limits
from reposeal.alpm.names import check_package_filename, split_entry_dir
from reposeal.alpm.safeio import read_limited
from reposeal.alpm.tarformat import END_OF_ARCHIVE, TarReader, plain_members, tar_member
from reposeal.errors import InvalidDatabaseError, ReposealError

_ENTRY_FILES = ("desc", "files")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class Entry:
    """One package of a repository, as both databases describe it."""

    name: str
    version: str
    desc: bytes
    files: bytes | None = None  # the files-database entry; None if unknown
    mtime: int = 0
    raw_db: bytes | None = None  # exact tar blocks in the sync database it was read from
    raw_files: bytes | None = None  # exact tar blocks in the files database

    @property
    def dirname(self) -> str:
        return f"{self.name}-{self.version}"

    def fields(self) -> dict[str, list[str]]:
        return parse_desc(self.desc, f"entry {self.dirname}/desc")

    @property
    def sha256(self) -> str:
        return single(self.fields(), "SHA256SUM", f"entry {self.dirname}/desc")

    @classmethod
    def from_package(cls, facts: PackageFacts, files: Iterable[str]) -> Entry:
        return cls(
            name=facts.info.name,
            version=facts.info.version,
            desc=render_desc(facts),
            files=render_files(files),
            mtime=facts.info.builddate or 0,
        )


@dataclass(frozen=True, slots=True)
class _Scanned:
    desc: bytes
    files: bytes | None
    raw: bytes | None


def _scan_archive(
    data: bytes, what: str, limits: Limits, *, end_optional: bool = False
) -> dict[str, _Scanned]:
    """Group the members of a decompressed database tar into entries."""
    members = plain_members(
        data,
        limits,
        max_total=limits.max_db_unpacked_bytes,
        max_data=limits.max_entry_file_bytes,
        end_optional=end_optional,
    )
    if members is None:  # not the plain common shape: the strict reader decides
        reader = TarReader(
            io.BytesIO(data),
            limits,
            max_total=limits.max_db_unpacked_bytes,
            end_optional=end_optional,
        )
        members = [
            (m, reader.last_data)
            for m in reader.members(lambda _: True, limits.max_entry_file_bytes)
        ]
    parts: dict[str, dict[str, bytes]] = {}
    spans: dict[str, list[tuple[int, int]]] = {}
    for m, content in members:
        dirname, _, leaf = m.name.partition("/")
        if m.is_dir:
            if leaf:
                raise InvalidDatabaseError(f"{what}: unexpected directory {m.name!r}")
        elif m.kind != "file" or leaf not in _ENTRY_FILES:
            raise InvalidDatabaseError(
                f"{what}: unexpected member {m.name!r} (a pacman database holds only "
                "NAME-VERSION/desc and NAME-VERSION/files)"
            )
        entry_parts = parts.setdefault(dirname, {})
        if leaf:
            if content is None:  # a file member always carries its data; never trust that
                raise InvalidDatabaseError(f"{what}: {m.name!r} has no data")
            entry_parts[leaf] = content
        run = spans.setdefault(dirname, [])
        if run and run[-1][1] == m.start:
            run[-1] = (run[-1][0], m.end)
        else:
            run.append((m.start, m.end))
    out: dict[str, _Scanned] = {}
    for dirname, entry_parts in parts.items():
        if "desc" not in entry_parts:
            raise InvalidDatabaseError(f"{what}: entry {dirname!r} has no desc")
        run = spans[dirname]
        raw = data[run[0][0] : run[0][1]] if len(run) == 1 else None
        out[dirname] = _Scanned(entry_parts["desc"], entry_parts.get("files"), raw)
    return out


def read_blob(path: Path, limits: Limits = DEFAULT_LIMITS) -> bytes:
    """Read a (compressed) database file, refusing absurd sizes."""
    blob = read_limited(path, limits.max_db_bytes, "database")
    if not blob:
        raise InvalidDatabaseError("database file is empty", path=path)
    return blob


def decompress_blob(blob: bytes, where: Path | str, limits: Limits = DEFAULT_LIMITS) -> bytes:
    """Decompress a database file's bytes (any supported compression, multi-member). A
    member whose header declares more than an entry may hold is refused from its header,
    before its data is decompressed: a small bomb costs milliseconds, not minutes."""
    try:
        kind = compression.detect(blob[:263])
        if kind != compression.PLAIN and kind not in compression.EXTERNAL:
            _check_declared_sizes(blob, kind, limits)
        return compression.decompress(blob, kind, limits.max_db_unpacked_bytes)
    except ReposealError as exc:
        raise exc.at(where) from None


def _check_declared_sizes(blob: bytes, kind: str, limits: Limits) -> None:
    """Stream the archive's headers (entries are small; their data is read, each at most
    ``max_entry_file_bytes``) and stop at the first member that declares more."""
    stream = compression.open_stream(io.BytesIO(blob), kind)
    reader = TarReader(stream, limits, max_total=limits.max_db_unpacked_bytes, end_optional=True)
    try:
        for _ in reader.members(lambda _: True, limits.max_entry_file_bytes):
            pass
    except compression.DECOMPRESS_ERRORS as exc:
        raise compression.error_from(exc) from None


def read_entries(
    db_path: Path, files_path: Path | None, limits: Limits = DEFAULT_LIMITS
) -> dict[str, Entry]:
    """Read a sync database and, if given and present, its files database.

    Returns entries by package name. Entry names are validated; desc contents are parsed
    lazily (see :func:`validate_entries` for the full check).
    """
    db_tar = decompress_blob(read_blob(db_path, limits), db_path, limits)
    files_tar = None
    if files_path is not None and files_path.exists():
        files_tar = decompress_blob(read_blob(files_path, limits), files_path, limits)
    return entries_from_tars(db_tar, files_tar, db_path, files_path, limits)


def entries_from_tars(
    db_tar: bytes,
    files_tar: bytes | None,
    db_where: Path | str,
    files_where: Path | str | None,
    limits: Limits = DEFAULT_LIMITS,
    *,
    end_optional: bool = False,
    files_within: bool = False,
) -> dict[str, Entry]:
    """Entries from decompressed sync (and files) tars; both must list the same packages.
    ``files_within``: ``db_tar`` is itself a files database (``files`` beside ``desc``)."""
    try:
        scanned = _scan_archive(db_tar, "sync database", limits, end_optional=end_optional)
    except ReposealError as exc:
        raise exc.at(db_where) from None
    files_scanned: dict[str, _Scanned] | None = None
    if files_tar is not None:
        try:
            files_scanned = _scan_archive(
                files_tar, "files database", limits, end_optional=end_optional
            )
        except ReposealError as exc:
            raise exc.at(files_where if files_where is not None else db_where) from None
        extra = sorted(set(files_scanned) - set(scanned))[:5]
        if extra:  # fewer is fine: repo-add leaves a files database without old entries
            raise InvalidDatabaseError(
                f"the files database lists packages the sync database does not "
                f"({', '.join(extra)}); rebuild both with `reposeal db add`",
                path=files_where,
            )
    entries: dict[str, Entry] = {}
    for dirname, s in scanned.items():
        try:
            name, version = split_entry_dir(dirname)
        except ReposealError as exc:
            raise InvalidDatabaseError(
                f"bad entry {dirname!r}: {exc.message}", path=db_where
            ) from None
        if name in entries:
            raise InvalidDatabaseError(
                f"package {name!r} appears twice ({entries[name].dirname} and {dirname})",
                path=db_where,
            )
        fs = files_scanned.get(dirname) if files_scanned is not None else None
        if fs is not None and fs.desc != s.desc:
            raise InvalidDatabaseError(
                f"entry {dirname}: desc differs between the sync and the files database",
                path=files_where,
            )
        entries[name] = Entry(
            name=name,
            version=version,
            desc=s.desc,
            files=fs.files if fs is not None else s.files if files_within else None,
            raw_db=s.raw,
            raw_files=fs.raw if fs is not None else None,
        )
    return entries


def validate_entries(entries: Mapping[str, Entry]) -> list[str]:
    """Check every desc fully; return a list of problems (empty when all is well)."""
    problems: list[str] = []
    for e in entries.values():
        try:
            problems += entry_problems(e, e.fields())
        except ReposealError as exc:
            problems.append(exc.message)
    return problems


# fields libalpm reads one line of (be_sync.c): a second line would be read as a header
SINGLE_VALUED = ("FILENAME", "NAME", "BASE", "VERSION", "DESC", "CSIZE", "ISIZE", "MD5SUM",
                 "SHA256SUM", "PGPSIG", "URL", "ARCH", "BUILDDATE", "PACKAGER")  # fmt: skip
_CONTROL_BYTES = re.compile(rb"[\x00-\x09\x0b-\x1f\x7f]")


def entry_problems(e: Entry, f: dict[str, list[str]]) -> list[str]:
    """What is wrong with one entry whose desc parsed into ``f``: what pacman would refuse,
    or read otherwise than it is written."""
    where = f"entry {e.dirname}"
    problems: list[str] = []
    for name in SINGLE_VALUED:
        if len(f.get(name, [])) > 1:
            problems.append(
                f"{where}: %{name}% has {len(f[name])} lines; pacman reads the first and takes "
                f"the next for a field header ({f[name][1][:40]!r})"
            )
    for blob in (e.desc, e.files or b""):
        if _CONTROL_BYTES.search(blob):
            problems.append(f"{where}: control bytes (NUL, CR, ...) pacman would read otherwise")
    try:
        if single(f, "NAME", where) != e.name:
            problems.append(f"{where}: %NAME% does not match the directory name")
        if single(f, "VERSION", where) != e.version:
            problems.append(f"{where}: %VERSION% does not match the directory name")
        check_package_filename(single(f, "FILENAME", where))
        if not _SHA256_HEX.fullmatch(single(f, "SHA256SUM", where)):
            problems.append(f"{where}: %SHA256SUM% is not a sha256 hex digest")
        for num in ("CSIZE", "ISIZE"):
            if num in f and not single(f, num, where).isdigit():
                problems.append(f"{where}: %{num}% is not a number")
        if e.files is not None:
            ff = parse_desc(e.files, f"{where}/files")
            if set(ff) - {"FILES"}:
                problems.append(f"{where}/files: unexpected fields {sorted(ff)}")
    except ReposealError as exc:
        problems.append(exc.message)
    return problems


def archive_chunks(entries: Iterable[Entry], files_db: bool, *, end: bool = True) -> list[bytes]:
    """The tar blocks of a sync (or files) database, entries in C-locale order."""
    chunks: list[bytes] = []
    for e in sorted(entries, key=lambda x: x.dirname.encode()):
        raw = e.raw_files if files_db else e.raw_db
        if raw is not None and (not files_db or e.files is not None):
            chunks.append(raw)
            continue
        d = e.dirname
        chunks.append(tar_member(d + "/", None, e.mtime))
        chunks.append(tar_member(d + "/desc", e.desc, e.mtime))
        if files_db and e.files is not None:
            chunks.append(tar_member(d + "/files", e.files, e.mtime))
    if end:
        chunks.append(END_OF_ARCHIVE)
    return chunks


def render_archive(entries: Iterable[Entry], files_db: bool, kind: str) -> bytes:
    """A complete, compressed database archive."""
    return compression.compress(archive_chunks(entries, files_db), kind)
