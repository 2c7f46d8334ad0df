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
