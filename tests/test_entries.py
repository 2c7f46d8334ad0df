"""Log entries too large for the log keep their large fields in a blob named by hash."""

from __future__ import annotations

import hashlib
import json

import pytest

from reposeal import canonical
from reposeal.alpm.limits import MAX_ENTRY_BYTES
from reposeal.enclave.records import fit_entry, read_entry


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
