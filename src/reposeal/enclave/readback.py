"""Reading the enclave's own output back with the consumer's parsers, before it is signed.

The worker writes the new sync and files databases itself; before anything is signed it
loads the chunks it wrote with libarchive (the library pacman reads archives with) and
libalpm (pacman's own database reader), and compares what they see with what it meant:
the archive holds exactly the ``NAME-VERSION/`` folders with their ``desc`` (and ``files``)
members, nothing that reads as a package; every field pacman uses, of every package, is
what the package file says. Any difference is a refusal, never a signature.

libalpm opens databases by path (``DBPATH/sync/NAME.db``). The sandbox has no writable
filesystem, so it is built with two fixed symbolic links, ``/alpm/sync/readback-db.db`` and
``readback-files.db``, pointing at ``/proc/self/fd/200`` and ``201``: the worker places its
in-memory files on those descriptors. Outside a sandbox (tests, ``--insecure-no-sandbox``) the
same links are made in a private temporary folder.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from reposeal.alpm.desc import PackageFacts, parse_desc

ALPM_DIR = Path("/alpm")
DB_FD, FILES_FD = 200, 201
NAMES = {DB_FD: "readback-db", FILES_FD: "readback-files"}

View = dict[str, Any]


@dataclass(frozen=True)
class Meant:
    """One entry as the worker wrote it: its bytes, and (for an entry written from a
    package file now) the package's facts and file list."""

    dirname: str
    desc: bytes
    files: bytes
    facts: PackageFacts | None = None
    paths: tuple[str, ...] | None = None


def _one(fields: Mapping[str, list[str]], key: str) -> str | None:
    values = fields.get(key)
    return values[0] if values else None


def view_of_desc(desc: bytes, where: str) -> View:
    """What pacman should see in a ``desc`` the worker wrote (its own format, read back)."""
    f = parse_desc(desc, where)

    def number(key: str) -> int:
        value = _one(f, key)
        return int(value) if value is not None else 0

    return {
        "name": _one(f, "NAME"),
        "version": _one(f, "VERSION"),
        "filename": _one(f, "FILENAME"),
        "base": _one(f, "BASE"),
        "desc": _one(f, "DESC"),
        "groups": f.get("GROUPS", []),
        "size": number("CSIZE"),
        "isize": number("ISIZE"),
        "md5sum": _one(f, "MD5SUM"),
        "sha256sum": _one(f, "SHA256SUM"),
        "base64_sig": _one(f, "PGPSIG"),
        "url": _one(f, "URL"),
        "licenses": f.get("LICENSE", []),
        "arch": _one(f, "ARCH"),
        "builddate": number("BUILDDATE"),
        "packager": _one(f, "PACKAGER"),
        "replaces": f.get("REPLACES", []),
        "conflicts": f.get("CONFLICTS", []),
        "provides": f.get("PROVIDES", []),
        "depends": f.get("DEPENDS", []),
        "optdepends": f.get("OPTDEPENDS", []),
    }


def view_of_facts(facts: PackageFacts) -> View:
    """What pacman should see for a package, from the package file's own facts."""
    i = facts.info

    def text(value: str) -> str | None:
        return value or None

    return {
        "name": i.name,
        "version": i.version,
        "filename": facts.filename,
        "base": text(i.base),
        "desc": text(i.desc),
        "groups": list(i.groups),
        "size": facts.csize,
        "isize": i.size or 0,
        "md5sum": facts.md5,
        "sha256sum": facts.sha256,
        "base64_sig": text(facts.pgpsig),
        "url": text(i.url),
        "licenses": list(i.licenses),
        "arch": i.arch,
        "builddate": i.builddate or 0,
        "packager": text(i.packager),
        "replaces": list(i.replaces),
        "conflicts": list(i.conflicts),
        "provides": list(i.provides),
        "depends": list(i.depends),
        "optdepends": list(i.optdepends),
    }


def _differences(what: str, seen: View, meant: View) -> list[str]:
    return [
        f"{what}: pacman would read {key} as {seen.get(key)!r}, not {meant[key]!r}"
        for key in meant
        if seen.get(key) != meant[key]
    ]


def members_problems(archive: bytes, meant: Sequence[Meant], files_db: bool) -> list[str]:
    """libarchive's reading of an archive the worker wrote, member by member."""
    import libarchive

    what = "files database" if files_db else "sync database"
    expected: list[tuple[str, bool, bytes]] = []
    for m in sorted(meant, key=lambda e: e.dirname.encode()):
        expected += [(m.dirname + "/", True, b""), (m.dirname + "/desc", False, m.desc)]
        if files_db:
            expected.append((m.dirname + "/files", False, m.files))
    seen: list[tuple[str, bool, bytes]] = []
    try:
        with libarchive.memory_reader(archive) as reader:
            for entry in reader:
                if len(seen) >= len(expected):
                    return [f"{what}: libarchive reads more members than were written"]
                data = b"".join(entry.get_blocks()) if entry.isfile else b""
                if not (entry.isdir or entry.isfile):
                    return [f"{what}: libarchive reads {entry.pathname!r} as a special file"]
                seen.append((str(entry.pathname), bool(entry.isdir), data))
    except libarchive.ArchiveError as exc:
        return [f"{what}: libarchive cannot read what was written ({exc})"]
    if seen != expected:
        for got, want in zip(seen, expected, strict=False):
            if got != want:
                return [f"{what}: libarchive reads member {got[0]!r} where {want[0]!r} was written"]
        return [f"{what}: libarchive reads {len(seen)} members, {len(expected)} were written"]
    return []


@cache
def _alpm_dir() -> Path:
    """The folder whose ``sync/`` links lead to the worker's descriptors 200 and 201."""
    if all((ALPM_DIR / "sync" / f"{n}.db").is_symlink() for n in NAMES.values()):
        return ALPM_DIR
    folder = Path(tempfile.mkdtemp(prefix="reposeal-readback-"))
    (folder / "sync").mkdir()
    for fd, name in NAMES.items():
        os.symlink(f"/proc/self/fd/{fd}", folder / "sync" / f"{name}.db")
    return folder


def _on_fd(fd: int, data: bytes) -> None:
    import resource

    memfd = os.memfd_create("readback")
    # writes to a memfd count against the file size limit, which the sandbox keeps small
    # (its stderr is a file): up to the hard limit, the largest database, for this only
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    try:
        if soft != resource.RLIM_INFINITY and len(data) > soft:
            resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
        view, done = memoryview(data), 0
        while done < len(data):
            done += os.write(memfd, view[done:])
        os.lseek(memfd, 0, os.SEEK_SET)
        os.dup2(memfd, fd, inheritable=False)
    finally:
        os.close(memfd)
        if resource.getrlimit(resource.RLIMIT_FSIZE) != (soft, hard):
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def alpm_problems(db: bytes, files: bytes, meant: Sequence[Meant]) -> list[str]:
    """libalpm's reading of both databases the worker wrote, field by field."""
    import pyalpm

    _on_fd(DB_FD, db)
    _on_fd(FILES_FD, files)
    try:
        handle = pyalpm.Handle("/", str(_alpm_dir()) + "/")
        sync = handle.register_syncdb(NAMES[DB_FD], 0)
        listed = handle.register_syncdb(NAMES[FILES_FD], 0)
        by_name = {m.dirname: m for m in meant}
        problems: list[str] = []
        for part, alpm_db in (("sync database", sync), ("files database", listed)):
            seen = {f"{p.name}-{p.version}": p for p in alpm_db.pkgcache}
            if set(seen) != set(by_name):
                odd = sorted(set(seen) ^ set(by_name))[:5]
                problems.append(f"{part}: libalpm reads other packages ({', '.join(odd)})")
                continue
            for dirname, pkg in sorted(seen.items()):
                m = by_name[dirname]
                got = {key: getattr(pkg, key) for key in view_of_facts_keys()}
                want = view_of_desc(m.desc, f"{dirname}/desc")
                problems += _differences(f"{part}, {dirname}", got, want)
                if part == "files database":
                    paths = [f[0] for f in pkg.files]
                    want_paths = parse_desc(m.files, f"{dirname}/files").get("FILES", [])
                    if paths != want_paths:
                        problems.append(f"{part}, {dirname}: libalpm reads another file list")
        return problems
    except pyalpm.error as exc:
        return [f"libalpm cannot read what was written ({exc})"]
    finally:
        for fd in NAMES:
            os.close(fd)


@cache
def view_of_facts_keys() -> tuple[str, ...]:
    return tuple(view_of_desc(b"%NAME%\nx\n\n", "keys"))


def read_back(db: bytes, files: bytes, meant: Sequence[Meant]) -> list[str]:
    """Every way what the worker wrote differs from what it meant (empty: sign it)."""
    problems: list[str] = []
    for m in meant:  # the bytes say what the package says
        if m.facts is not None:
            problems += _differences(
                f"{m.dirname}/desc",
                view_of_desc(m.desc, f"{m.dirname}/desc"),
                view_of_facts(m.facts),
            )
        listed = parse_desc(m.files, f"{m.dirname}/files").get("FILES", [])
        if m.paths is not None and listed != list(m.paths):
            problems.append(f"{m.dirname}/files: does not list the package's files")
    problems += members_problems(db, meant, files_db=False)
    problems += members_problems(files, meant, files_db=True)
    if not problems:
        problems += alpm_problems(db, files, meant)
    return problems


def warm_read_back() -> None:
    """Read back a made-up one-entry database once (the sandbox template's warm-up), so
    libarchive and libalpm are loaded before the first job's worker is forked."""
    from reposeal.alpm import chunked, compression
    from reposeal.alpm.desc import render_files
    from reposeal.alpm.syncdb import Entry

    desc = b"%FILENAME%\nwarm-up-1-1-any.pkg.tar.zst\n\n%NAME%\nwarm-up\n\n%VERSION%\n1-1\n\n"
    entry = Entry("warm-up", "1-1", desc, render_files(["usr/"]))
    chunks = chunked.make_chunks([entry], compression.GZIP)
    db = chunked.assemble(chunks, "db", compression.GZIP)
    files = chunked.assemble(chunks, "files", compression.GZIP)
    problems = read_back(db, files, [Meant(entry.dirname, entry.desc, entry.files or b"")])
    if problems:
        raise RuntimeError(f"the read-back does not work here: {problems[0]}")
