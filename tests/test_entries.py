"""Log entries too large for the log keep their large fields in a blob named by hash."""

from __future__ import annotations

import contextlib
import hashlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reposeal import canonical
from reposeal.alpm.limits import MAX_ENTRY_BYTES
from reposeal.enclave.records import fit_entry, read_entry
from reposeal.policy.entries import LogEntry
from tests.strategies import JSON


def test_large_entries_spill_and_read_back_whole() -> None:
    blobs: dict[str, bytes] = {}

    def store(blob: bytes) -> str:
        blobs[hashlib.sha256(blob).hexdigest()] = blob
        return hashlib.sha256(blob).hexdigest()

    small = canonical.dumps({"type": "packages", "evidence": ["a" * 64]})
    assert fit_entry(small, store) == small and not blobs
    doc = {"type": "packages", "job": "j", "evidence": [f"{i:064x}" for i in range(2000)]}
    raw = fit_entry(canonical.dumps(doc), store)
    assert len(raw) <= MAX_ENTRY_BYTES and "evidence" not in json.loads(raw)
    assert read_entry(raw, blobs.__getitem__) == doc
    (digest,) = blobs
    blobs[digest] = blobs[digest].replace(b"0000", b"0001", 1)
    with pytest.raises(ValueError, match="do not match their hash"):
        read_entry(raw, blobs.__getitem__)


def test_every_kind_of_log_entry_reads_as_a_typed_record() -> None:
    from reposeal.policy.entries import ENTRY_VERSION, EntryError, LogEntry

    base = {"v": ENTRY_VERSION}
    genesis = LogEntry.read(base | {"type": "genesis", "signer": "AB", "policy_sha256": "p"})
    assert (genesis.signer, genesis.policy_sha256) == ("AB", "p")
    db = LogEntry.read(base | {"type": "db", "job": "j", "request": "r", "repo": "core",
                               "arch": "x86_64", "db_sha256": "d", "files_sha256": "f",
                               "index_sha256": "i", "compression": ".zst", "parent": None,
                               "replaced": ["old.pkg"], "signature": "c2ln",
                               "package_signatures": {"s": "c2ln"}, "extra": [1]})  # fmt: skip
    assert db.replaced == ("old.pkg",) and db.parent is None and db.job == "j"
    refused = LogEntry.read(base | {"type": "refusal", "job": "j", "reasons": ["no"]})
    assert refused.reasons == ("no",)
    for bad in (
        {"type": "genesis", "signer": "AB", "policy_sha256": "p", "v": 1},  # another version
        {"type": "forged"},
        {"type": "db", "repo": "core"},  # lacks its databases
        {"type": "refusal", "reasons": "no"},
        {"type": "refusal", "job": 5},
        {"type": "db", "repo": "c", "arch": "a", "db_sha256": "d", "files_sha256": "f",
         "index_sha256": "i", "compression": ".gz", "package_signatures": {"s": 1}},
    ):  # fmt: skip
        with pytest.raises(EntryError):
            LogEntry.read({"v": ENTRY_VERSION} | bad)


def test_every_field_of_an_entry_has_a_json_shape() -> None:
    from dataclasses import fields

    from reposeal.policy.entries import _KINDS, LogEntry

    assert set(_KINDS) == {f.name for f in fields(LogEntry)} - {"type"}


_texts = st.lists(st.text(max_size=6), max_size=3).map(tuple)
_entries = st.builds(
    LogEntry,
    type=st.just("refusal"),
    job=st.none() | st.text(max_size=8),
    repo=st.none() | st.text(max_size=8),
    reasons=_texts,
    policy_version=st.none() | st.integers(0, 1 << 40),
    parent=st.none() | st.text(max_size=8),
    evidence=_texts,
    evidence_signatures=st.none() | st.dictionaries(st.text(max_size=4), _texts, max_size=3),
    moved_from=st.dictionaries(st.text(max_size=4), st.text(max_size=4), max_size=3),
    admitted=st.dictionaries(st.text(max_size=4), _texts, max_size=3),
    adoption=st.booleans(),
)


@given(_entries)
def test_an_entry_reads_back_as_it_was_written(entry: LogEntry) -> None:
    from reposeal import canonical

    doc = json.loads(canonical.dumps(entry.to_json()))
    assert LogEntry.read(doc) == entry
    unwritten = [k for k, v in doc.items() if v is None or v is False or v in ([], {})]
    assert unwritten in ([], ["evidence_signatures"]), unwritten


@given(JSON)
def test_any_json_is_an_entry_or_an_entry_error(doc: object) -> None:
    from reposeal.policy.entries import ENTRY_VERSION, EntryError

    if not isinstance(doc, dict):
        return
    for candidate in (doc, doc | {"v": ENTRY_VERSION, "type": "refusal"}):
        with contextlib.suppress(EntryError):
            LogEntry.read(candidate)


def test_a_field_of_the_wrong_shape_is_named() -> None:
    from reposeal.policy.entries import ENTRY_VERSION, EntryError

    base = {"v": ENTRY_VERSION, "type": "refusal"}
    for name, value in (("policy_version", True), ("policy_version", "2"), ("adoption", 1),
                        ("evidence_signatures", {"a": "b"}), ("moved_from", {"a": ["b"]}),
                        ("admitted", ["a"]), ("pkgbuilds", "x")):  # fmt: skip
        with pytest.raises(EntryError, match=name.replace("_", " ")):
            LogEntry.read(base | {name: value})
