"""The client's pure log checks: a published log must make its checkpoint's tree, be signed
by its own note key, and extend what was seen; hostile tile bytes are refused, never crash."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reposeal.client.verify import VerifyError, check_consistent, check_database
from reposeal.translog.checkpoint import Checkpoint, NoteSigner
from reposeal.translog.merkle import leaf_hash, root_of_leaves
from reposeal.translog.published import _bundle, check_log

KEY = NoteSigner.generate("example/log")


def make(entries: list[bytes], key: NoteSigner = KEY) -> tuple[Checkpoint, bytes]:
    cp = Checkpoint("example/log", len(entries), root_of_leaves([leaf_hash(e) for e in entries]))
    return cp, key.sign(cp.text()).encode()


GENESIS = json.dumps({"type": "genesis", "note_verifier": KEY.verifier.encode()}).encode()


def db(i: int, sha: str, sig: str = "c2ln") -> bytes:
    doc = {"type": "db", "repo": "core", "arch": "x86_64", "db_sha256": sha, "signature": sig}
    return json.dumps(doc | {"n": i}).encode()


def test_a_log_is_checked_against_its_checkpoint_and_note_key() -> None:
    entries = [GENESIS, db(1, "a" * 64)]
    cp, note = make(entries)
    assert check_log(cp, note, entries).docs[1]["db_sha256"] == "a" * 64
    with pytest.raises(VerifyError, match="do not make"):
        check_log(cp, note, [GENESIS, db(1, "b" * 64)])
    other_cp, other_note = make(entries, NoteSigner.generate("example/log"))
    with pytest.raises(VerifyError, match="log's own key"):
        check_log(other_cp, other_note, entries)


def test_consistency_with_what_was_seen() -> None:
    entries = [GENESIS, db(1, "a" * 64), db(2, "b" * 64)]
    log = check_log(*make(entries), entries)
    seen = (2, root_of_leaves([leaf_hash(e) for e in entries[:2]]))
    check_consistent(log, seen)
    check_consistent(log, None)
    with pytest.raises(VerifyError, match="split view"):
        check_consistent(log, (2, b"\0" * 32))
    with pytest.raises(VerifyError, match="fewer than"):
        check_consistent(log, (4, b"\0" * 32))


def test_the_database_must_be_the_latest_logged() -> None:
    import base64
    import hashlib

    old, new = b"old database", b"new database"
    sig = base64.b64encode(b"sig").decode()
    entries = [
        GENESIS,
        db(1, hashlib.sha256(old).hexdigest(), sig),
        db(2, hashlib.sha256(new).hexdigest(), sig),
    ]
    log = check_log(*make(entries), entries)
    assert check_database(log, "core", new, b"sig") == ("x86_64", 2)
    with pytest.raises(VerifyError, match="not the latest"):
        check_database(log, "core", old, b"sig")
    with pytest.raises(VerifyError, match="never logged"):
        check_database(log, "core", new, b"other sig")
    with pytest.raises(VerifyError, match="not in the transparency log"):
        check_database(log, "extra", new, b"sig")


@given(st.binary(max_size=300))
def test_hostile_tile_bytes_are_refused_or_read(data: bytes) -> None:
    try:
        entries = _bundle(data)
    except VerifyError:
        return
    assert sum(2 + len(e) for e in entries) == len(data)
