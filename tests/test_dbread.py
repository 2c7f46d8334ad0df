"""The worker's database read: reading only the chunks that changed must give exactly what
reading everything gives, or step aside; never a different answer."""

from __future__ import annotations

import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reposeal.alpm import chunked, compression
from reposeal.alpm.tarformat import END_OF_ARCHIVE
from reposeal.enclave.dbread import DbRead, _whole, chunk_map, read_db
from reposeal.errors import ReposealError
from tests.alpm.test_chunked import entry


def build(versions: dict[str, str], kind: str = "gz", size: int = 8) -> bytes:
    chunks = chunked.make_chunks([entry(n, v) for n, v in versions.items()], kind, size=size)
    return chunked.assemble(chunks, "db", kind)


def known_of(read: DbRead) -> dict[str, tuple[str, object]]:
    return {n: (read.entries[n], r) for n, r in read.records.items()}


PARENT = {f"p{i:03d}": "1-1" for i in range(60)}


@pytest.mark.parametrize("kind", ["gz", "zst"])
def test_only_changed_chunks_are_read_and_the_result_is_the_same(kind: str) -> None:
    first = read_db(build(PARENT, kind), "parent", {}, {})
    assert first.chunks is not None and len(first.chunks) == 8
    changed = dict(PARENT, p031="2-1")
    blob = build(changed, kind)
    whole = _whole(blob, "new", {})
    calls = []
    known = known_of(first)

    class Counting(dict):  # type: ignore[type-arg]
        def get(self, key, default=None):  # type: ignore[no-untyped-def]
            calls.append(key)
            return super().get(key, default)

    fast = read_db(blob, "new", Counting(known), chunk_map(first.chunks))
    assert (fast.records, fast.entries) == whole
    assert fast.records["p031"].version == "2-1"
    assert len(calls) == 8, "only the entries of the one changed chunk were looked at"
    assert fast.chunks is not None and len(fast.chunks) == 8


def test_databases_not_made_of_chunks_are_read_whole() -> None:
    """repo-add writes one gzip member holding everything: read whole, no chunk map."""
    tar = compression.decompress(build(PARENT, "gz"), "gz", 1 << 30)
    c = zlib.compressobj(6, zlib.DEFLATED, 31)
    read = read_db(c.compress(tar) + c.flush(), "repo-add style", {}, {})
    assert read.chunks is None
    assert sorted(read.records) == sorted(PARENT)


def test_an_end_block_inside_a_chunk_is_not_skipped_over() -> None:
    """A chunk whose tar ends early (an end block, then more entries) must not count as
    whole: pacman would stop reading at the end block."""
    good = chunked.make_chunks([entry(f"a{i}", "1-1") for i in range(4)], "gz", size=4)
    more = chunked.make_chunks([entry(f"b{i}", "1-1") for i in range(4)], "gz", size=4)
    tar = zlib.decompress(good[0].db, 47) + END_OF_ARCHIVE + zlib.decompress(more[0].db, 47)
    c = zlib.compressobj(6, zlib.DEFLATED, 31)
    sneaky = c.compress(tar) + c.flush()
    blob = sneaky + chunked.end_member("gz")
    read = read_db(blob, "new", {}, {})
    assert read.chunks is None, "read whole, the strict way"
    assert sorted(read.records) == [f"a{i}" for i in range(4)], "as pacman sees it"


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_fuzzed_chunked_databases_read_the_same_either_way(data: st.DataObject) -> None:
    first = read_db(build(PARENT), "parent", {}, {})
    versions = dict(PARENT)
    for _ in range(data.draw(st.integers(0, 3))):
        versions[f"p{data.draw(st.integers(0, 70)):03d}"] = data.draw(
            st.sampled_from(["1-1", "2-1", "1:0-1"])
        )
    raw = bytearray(build(versions))
    for _ in range(data.draw(st.integers(0, 3))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    blob = bytes(raw)
    try:
        whole: object = _whole(blob, "new", {})
    except ReposealError as exc:
        whole = type(exc)
    try:
        fast = read_db(blob, "new", known_of(first), chunk_map(first.chunks))
        got: object = (fast.records, fast.entries)
    except ReposealError as exc:
        got = type(exc)
    assert got == whole
