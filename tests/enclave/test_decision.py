"""A worker's answer leaves the sandbox only as a typed decision: every field checked, and
anything else (fuzzed) a MalformedDecisionError, never another exception."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reposeal.enclave.decision import Decision, MalformedDecisionError
from tests.strategies import JSON

ACCEPTED = {
    "decision": "accept", "reasons": [], "repo": "core", "arch": "x86_64", "parent": None,
    "policy_version": 3, "ignored_evidence": ["x.json: unreadable"], "evidence": ["a" * 64],
    "evidence_signatures": {"a" * 64: ["b" * 64]}, "used_overrides": [], "used_removals": [],
    "admitted": {"hello": ["c" * 64]}, "moved_from": {"hello": "testing"}, "removes": ["old"],
    "replaced": ["hello-1.0-1-any.pkg.tar.zst"], "records_sha256": "d" * 64,
    "db_sha256": "e" * 64, "files_sha256": "f" * 64, "index_sha256": "0" * 64,
}  # fmt: skip


def test_a_decision_round_trips_and_says_what_it_wrote() -> None:
    d = Decision.from_json(ACCEPTED)
    assert (
        d.accepted and d.digest("db") == "e" * 64 and d.evidence_signatures["a" * 64] == ("b" * 64,)
    )
    assert Decision.from_json(d.to_json()) == d
    assert not Decision.refusal("no").accepted and Decision.refusal("no").reasons == ("no",)


@pytest.mark.parametrize(
    ("field", "value"),
    [("decision", "maybe"), ("reasons", "one reason"), ("reasons", [1]), ("evidence", None),
     ("evidence_signatures", {"a": "b"}), ("moved_from", {"x": 1}), ("policy_version", "3"),
     ("policy_version", True), ("adoption", 1), ("db_sha256", 5), ("repo", None),
     ("signature", "forged")],
)  # fmt: skip
def test_a_malformed_field_is_refused(field: str, value: object) -> None:
    with pytest.raises(MalformedDecisionError):
        Decision.from_json({**ACCEPTED, field: value})


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from([*ACCEPTED, "extra"]), JSON, max_size=6) | JSON)
def test_any_json_is_a_decision_or_a_malformed_decision(doc: object) -> None:
    with contextlib.suppress(MalformedDecisionError):
        Decision.from_json(doc)
