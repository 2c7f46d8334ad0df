"""Chunked archives: the fast path must always equal a full rebuild, and a bad index is
never trusted."""

from __future__ import annotations

import gzip
import io
import tarfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reposeal.alpm import chunked
from reposeal.alpm.desc import PackageFacts
from reposeal.alpm.pkginfo import PkgInfo
from reposeal.alpm.syncdb import Entry, decompress_blob, entries_from_tars
from reposeal.repo.changes import AddRules, plan_add, plan_remove


def entry(name: str, version: str) -> Entry:
    info = PkgInfo(name=name, version=version, arch="any")
    facts = PackageFacts(info, f"{name}-{version}-any.pkg.tar.zst", 1, "0" * 32, "a" * 64)
    return Entry.from_package(facts, [f"usr/share/{name}/"])


def archives(chunks: list[chunked.Chunk], kind: str) -> dict[str, bytes]:
    return {p: chunked.assemble(chunks, p, kind) for p in ("db", "files")}


def full_read(blobs: dict[str, bytes]) -> dict[str, str]:
    db = decompress_blob(blobs["db"], "db")
    files = decompress_blob(blobs["files"], "files")
    return {n: e.version for n, e in entries_from_tars(db, files, "db", "files").items()}


@pytest.mark.parametrize("kind", ["gz", "zst", "tar"])
def test_multi_member_archive_is_one_ordinary_tar(kind: str) -> None:
    entries = [entry(f"p{i:03d}", "1-1") for i in range(50)]
    chunks = chunked.make_chunks(entries, kind, size=8)
    assert len(chunks) == 7
    blobs = archives(chunks, kind)
    assert full_read(blobs) == {e.name: "1-1" for e in entries}
    if kind == "gz":  # the stdlib (and gzip -d) read all members as one stream
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blobs["db"]))) as t:
            assert len([n for n in t.getnames() if n.endswith("/desc")]) == 50
    doc = chunked.index_document(chunks, kind, blobs)
    again = chunked.chunks_from_index(doc, kind, blobs)
    assert again == chunks


def test_index_that_does_not_match_is_ignored() -> None:
    chunks = chunked.make_chunks([entry(f"p{i}", "1-1") for i in range(20)], "gz", size=4)
    blobs = archives(chunks, "gz")
    doc = chunked.index_document(chunks, "gz", blobs)
    other = dict(blobs, db=blobs["db"] + b"\0")
    assert chunked.chunks_from_index(doc, "gz", other) is None
    for broken in (
        {**doc, "version": 99},
        {**doc, "chunks": doc["chunks"][:-1]},
        {**doc, "chunks": list(reversed(doc["chunks"]))},
        {**doc, "db": {**doc["db"], "lengths": [1] * len(chunks)}},
        "not a dict",
        None,
    ):
        assert chunked.chunks_from_index(broken, "gz", blobs) is None
    assert chunked.chunks_from_index(doc, "zst", blobs) is None


_ops = st.lists(
    st.tuples(
        st.sampled_from(["add", "remove"]),
        st.lists(
            st.sampled_from(["a", "ab", "a-b", "b", "b2", "c", "cc", "d", "z", "zz"]),
            min_size=1,
            max_size=3,
            unique=True,
        ),
        st.sampled_from(["1-1", "2-1", "1:0-1", "3-2"]),
    ),
    max_size=12,
)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(_ops, st.integers(1, 4))
def test_fast_path_equals_full_rebuild(ops: list[tuple[str, list[str], str]], size: int) -> None:
    base = [entry(f"{c}{i}", "1-1") for c in "abcz" for i in range(3)]
    reference = {e.name: e for e in base}
    chunks = chunked.make_chunks(base, "gz", size=size)
    for op, names, version in ops:
        touched = chunked.affected(chunks, names)
        subset = chunked.read_chunks(
            [chunks[i] for i in touched], "gz", {"db": "db", "files": "files"}
        )
        if op == "add":
            new = [entry(n, version) for n in names]
            plan = plan_add(subset, new, AddRules(allow_downgrade=True))
            ref_plan = plan_add(reference, new, AddRules(allow_downgrade=True))
        else:
            plan = plan_remove(subset, names)
            ref_plan = plan_remove(reference, names)
        assert plan.refusals == ref_plan.refusals
        if plan.refusals:
            continue
        chunks = chunked.rechunk(chunks, touched, plan.entries.values(), "gz", size=size)
        reference = ref_plan.entries
        blobs = archives(chunks, "gz")
        assert full_read(blobs) == {n: e.version for n, e in reference.items()}
        keys = [k.encode() for c in chunks for k in (c.first, c.last)]
        assert sorted(keys) == keys  # chunks stay in order, so the next lookup is right
        assert (
            chunked.chunks_from_index(chunked.index_document(chunks, "gz", blobs), "gz", blobs)
            == chunks
        )


def test_a_new_name_between_chunks_goes_into_the_smaller_neighbour() -> None:
    """A package with a huge file list is a chunk of its own: a new name sorting next to it
    lands in the small chunk on its other side, and the big one is copied as it is."""
    small = [entry(f"a{i}", "1-1") for i in range(3)]
    info = PkgInfo(name="m-huge", version="1-1", arch="any")
    facts = PackageFacts(info, "m-huge-1-1-any.pkg.tar.zst", 1, "0" * 32, "a" * 64)
    huge = Entry.from_package(facts, [f"usr/share/huge/{i:06d}" for i in range(20000)])
    chunks = chunked.make_chunks([*small, huge, entry("z0", "1-1")], "gz", size=3)
    big = next(i for i, c in enumerate(chunks) if c.first == "m-huge-1-1")
    assert chunks[big].count == 1
    for name in ("n-new", "b-new"):  # after it (then z0's chunk) and before it (then a's)
        touched = chunked.affected(chunks, [name])
        assert big not in touched, (name, touched)
    assert chunked.affected(chunks, ["m-huge"]) == [big], "its own update rewrites it"
