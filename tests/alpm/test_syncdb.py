"""Sync and files databases: round trips, raw-block reuse, and hostile databases."""

from __future__ import annotations

import contextlib
import tarfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reposeal.alpm import compression
from reposeal.alpm.package import read_package
from reposeal.alpm.syncdb import Entry, read_entries, render_archive, validate_entries
from reposeal.alpm.synthetic import write_package
from reposeal.errors import InputError, InvalidDatabaseError, UnsafeArchiveError
from tests.alpm.hostile import file, member, tar_bytes


def entries_for(tmp_path: Path, n: int) -> list[Entry]:
    out = []
    for i in range(n):
        pkg = read_package(write_package(tmp_path, f"pkg{i}", f"1.{i}-1"))
        out.append(Entry.from_package(pkg.facts, pkg.files))
    return out


def write_db(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("kind", ["gz", "zst", "xz", "bz2", "lz4", "lrz", "lzo", "Z", "lz"])
def test_round_trip(tmp_path: Path, kind: str) -> None:
    entries = entries_for(tmp_path, 5)
    db = write_db(tmp_path / f"r.db.tar.{kind}", render_archive(entries, False, kind))
    files = write_db(tmp_path / f"r.files.tar.{kind}", render_archive(entries, True, kind))
    back = read_entries(db, files)
    assert sorted(back) == [f"pkg{i}" for i in range(5)]
    for e in entries:
        assert back[e.name].desc == e.desc
        assert back[e.name].files == e.files
        assert back[e.name].version == e.version
    assert validate_entries(back) == []
    # copying the raw blocks reproduces the archive exactly (the tar: lzop's header holds
    # the time it ran, so its compressed bytes differ from one second to the next)
    again = render_archive(back.values(), True, kind)
    if kind in compression.EXTERNAL:
        limit = 1 << 30
        assert compression.decompress(again, kind, limit) == compression.decompress(
            files.read_bytes(), kind, limit
        )
    else:
        assert again == files.read_bytes()


@pytest.mark.parametrize("kind", sorted(compression.EXTERNAL))
def test_a_truncated_database_in_an_external_format_is_refused(tmp_path: Path, kind: str) -> None:
    """compress (.Z) has no end marker: the tar reader is what notices the missing end."""
    from reposeal.errors import ReposealError

    whole = render_archive(entries_for(tmp_path, 40), False, kind)
    db = write_db(tmp_path / f"r.db.tar.{kind}", whole[: len(whole) * 2 // 3])
    with pytest.raises(ReposealError):
        read_entries(db, None)


def test_long_entry_names_use_pax_headers(tmp_path: Path) -> None:
    name = "p" + "x" * 180
    pkg = read_package(write_package(tmp_path, name, "1-1"))
    e = Entry.from_package(pkg.facts, pkg.files)
    db = write_db(tmp_path / "r.db.tar.gz", render_archive([e], False, "gz"))
    assert read_entries(db, None)[name].dirname == f"{name}-1-1"
    with tarfile.open(db) as t:  # a second, independent reader agrees
        assert f"{name}-1-1/desc" in t.getnames()


def db_of(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    return compression.compress([tar_bytes(members)], "gz")


DESC = b"%FILENAME%\na-1-1-any.pkg.tar.zst\n\n%NAME%\na\n\n%VERSION%\n1-1\n\n"
HOSTILE_DBS = {
    "traversal": db_of([file("../a-1-1/desc", DESC)]),
    "nested": db_of([file("a-1-1/sub/desc", DESC)]),
    "stray file": db_of([file("a-1-1/evil", b"x")]),
    "no desc": db_of([member("a-1-1/", tarfile.DIRTYPE)]),
    "bad dir name": db_of([file("a/desc", DESC)]),
    "same name twice": db_of([file("a-1-1/desc", DESC), file("a-2-1/desc", DESC)]),
    "duplicate member": db_of([file("a-1-1/desc", DESC), file("a-1-1/desc", DESC)]),
    "symlink": db_of([member("a-1-1/desc", tarfile.SYMTYPE, "/etc/shadow")]),
    "not compressed right": b"\x1f\x8b\x08\x00garbage" + bytes(40),
    "empty file": b"",
}


@pytest.mark.parametrize("case", sorted(HOSTILE_DBS))
def test_hostile_databases(tmp_path: Path, case: str) -> None:
    db = write_db(tmp_path / "r.db.tar.gz", HOSTILE_DBS[case])
    with pytest.raises(InputError) as info:
        read_entries(db, None)
    assert info.value.path == db


def test_traversal_is_unsafe(tmp_path: Path) -> None:
    db = write_db(tmp_path / "r.db.tar.gz", HOSTILE_DBS["traversal"])
    with pytest.raises(UnsafeArchiveError, match="traversal"):
        read_entries(db, None)


def test_a_files_database_may_lack_entries_but_never_add_any(tmp_path: Path) -> None:
    """repo-add leaves a files database holding only what it added when none was there."""
    entries = entries_for(tmp_path, 3)
    db = write_db(tmp_path / "r.db.tar.gz", render_archive(entries, False, "gz"))
    files = write_db(tmp_path / "r.files.tar.gz", render_archive(entries[:2], True, "gz"))
    read = read_entries(db, files)
    assert sum(e.files is None for e in read.values()) == 1
    few = write_db(tmp_path / "few.db.tar.gz", render_archive(entries[:2], False, "gz"))
    more = write_db(tmp_path / "more.files.tar.gz", render_archive(entries, True, "gz"))
    with pytest.raises(InvalidDatabaseError, match="the sync database does not"):
        read_entries(few, more)


def test_validate_finds_inconsistent_desc(tmp_path: Path) -> None:
    db = write_db(
        tmp_path / "r.db.tar.gz", db_of([file("a-1-1/desc", DESC.replace(b"\na\n", b"\nb\n"))])
    )
    problems = validate_entries(read_entries(db, None))
    assert any("%NAME%" in p for p in problems)
    assert any("SHA256SUM" in p for p in problems)


def test_empty_database(tmp_path: Path) -> None:
    db = write_db(tmp_path / "r.db.tar.zst", render_archive([], False, "zst"))
    assert read_entries(db, None) == {}


_VALID_DB: bytes = b""


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_fuzzed_databases_only_raise_input_errors(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    global _VALID_DB
    tmp = tmp_path_factory.mktemp("fz")
    if not _VALID_DB:
        _VALID_DB = render_archive(entries_for(tmp, 3), True, "tar")
    raw = bytearray(_VALID_DB)
    for _ in range(data.draw(st.integers(1, 6))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    db = write_db(tmp / "r.db.tar", bytes(raw[:cut] if cut else raw))
    with contextlib.suppress(InputError):
        validate_entries(read_entries(db, None))


def test_a_database_bomb_is_refused_from_its_header(tmp_path: Path) -> None:
    """A small gzip file whose one member declares 4 GiB: refused from the header, before
    the data is decompressed (issue 16: it used to cost a MemoryError or 41 s)."""
    import tarfile
    import zlib

    from reposeal.errors import LimitExceededError

    info = tarfile.TarInfo("x-1-1/desc")
    info.size = 4 << 30
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    blob = c.compress(info.tobuf(format=tarfile.USTAR_FORMAT))
    blob += b"".join(c.compress(b"\0" * (1 << 20)) for _ in range(64)) + c.flush()
    db = write_db(tmp_path / "bomb.db.tar.gz", blob)
    with pytest.raises(LimitExceededError, match="4294967296 bytes"):
        read_entries(db, None)
