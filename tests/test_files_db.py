"""The worker's check of a files database: it is signed with the sync database only if it
lists the same packages with the same desc, each with exactly its package's files; chunks
the parent had are not read again, and reading them or not gives the same answer."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from reposeal.alpm import chunked
from reposeal.alpm.desc import render_files
from reposeal.alpm.package import read_package
from reposeal.alpm.syncdb import Entry
from reposeal.alpm.synthetic import write_package
from reposeal.enclave.dbread import files_sha256, read_db, read_files_db
from reposeal.enclave.worker import _check_files_db


def entries_of(tmp_path: Path, versions: dict[str, str]) -> dict[str, Entry]:
    out = {}
    for name, version in versions.items():
        pkg = read_package(write_package(tmp_path, name, version))
        out[name] = Entry.from_package(pkg.facts, pkg.files)
    return out


def archives(entries: dict[str, Entry]) -> dict[str, bytes]:
    chunks = chunked.make_chunks(entries.values(), "gz", size=2)
    return {p: chunked.assemble(chunks, p, "gz") for p in ("db", "files")}


def listing(e: Entry) -> str:
    return files_sha256(e.files)


VERSIONS = {f"p{i}": "1-1" for i in range(6)}


def check(blobs: dict[str, bytes], listed: dict[str, str], parent: object = None) -> list[str]:
    reasons: list[str] = []
    entries = read_db(blobs["db"], "db", {}, {}).entries
    _check_files_db(blobs["files"], entries, listed, {}, parent, reasons)
    return reasons


def test_an_honest_files_database_passes(tmp_path: Path) -> None:
    entries = entries_of(tmp_path, VERSIONS)
    assert check(archives(entries), {n: listing(e) for n, e in entries.items()}) == []


def test_a_files_database_listing_other_files_is_refused(tmp_path: Path) -> None:
    entries = entries_of(tmp_path, VERSIONS)
    listed = {n: listing(e) for n, e in entries.items()}
    forged = dict(entries)
    forged["p3"] = Entry("p3", "1-1", entries["p3"].desc, render_files(["usr/bin/sudo"]))
    blobs = {"db": archives(entries)["db"], "files": archives(forged)["files"]}
    assert check(blobs, listed) == ["p3: the files database lists other files than the package has"]


def test_a_files_database_with_other_packages_or_descs_is_refused(tmp_path: Path) -> None:
    entries = entries_of(tmp_path, VERSIONS)
    listed = {n: listing(e) for n, e in entries.items()}
    fewer = {n: e for n, e in entries.items() if n != "p5"}
    blobs = {"db": archives(entries)["db"], "files": archives(fewer)["files"]}
    (reason,) = check(blobs, listed)
    assert "does not list the same packages" in reason and "p5" in reason

    other = dict(entries)
    other["p1"] = Entry("p1", "1-1", entries["p1"].desc + b"%URL%\nevil\n\n", entries["p1"].files)
    blobs = {"db": archives(entries)["db"], "files": archives(other)["files"]}
    assert check(blobs, listed) == ["p1: its files-database desc differs from the sync database's"]


def test_a_file_list_nobody_checked_is_not_signed(tmp_path: Path) -> None:
    entries = entries_of(tmp_path, VERSIONS)
    listed = {n: listing(e) for n, e in entries.items() if n != "p2"}
    (reason,) = check(archives(entries), listed)
    assert reason.startswith("p2: its file list cannot be checked")


@pytest.mark.parametrize("changed", ["p0", "p3", "p5"])
def test_only_changed_chunks_are_read_and_the_answer_is_the_same(
    tmp_path: Path, changed: str
) -> None:
    parent = entries_of(tmp_path, VERSIONS)
    first = read_files_db(archives(parent)["files"], "parent", {}, {})
    assert first.chunks is not None and len(first.chunks) == 3
    known = {n: (first.entries[n], first.files[n]) for n in first.entries}

    new = dict(parent) | entries_of(tmp_path, {changed: "2-1"})
    blob = archives(new)["files"]
    fast = read_files_db(blob, "new", known, {c["sha256"]: c["names"] for c in first.chunks})
    whole = read_files_db(blob, "new", {}, {})
    assert (fast.entries, fast.files) == (whole.entries, whole.files)
    assert fast.files[changed] == listing(new[changed])
    assert fast.chunks == whole.chunks

    # a parent chunk reused by its bytes keeps the parent's hashes, never the new ones: a
    # files chunk left as it was while the sync entry changed is caught by the desc check
    stale = {"db": archives(new)["db"], "files": archives(parent)["files"]}
    listed = {n: listing(e) for n, e in new.items()}
    reasons: list[str] = []
    entries = read_db(stale["db"], "db", {}, {}).entries
    chunks_doc = {"files": first.chunks}
    _check_files_db(stale["files"], entries, listed, known, chunks_doc, reasons)
    assert reasons == [f"{changed}: its files-database desc differs from the sync database's"]
    assert hashlib.sha256(blob).hexdigest() != hashlib.sha256(stale["files"]).hexdigest()
