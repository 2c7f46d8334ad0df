"""The enclave's answers as the bridge carries them: what the enclave writes, the repo
machine reads back field by field; anything else (fuzzed) is a MalformedAnswerError."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reposeal.protocol.answers import DatabaseAnswer, JobResult, MalformedAnswerError
from tests.strategies import JSON

ANSWER = JobResult(
    "core-1", "accept", [], 7, b"sig", b"origin\n7\nroot\n", [b"h1", b"h2"],
    {"a.pkg.tar.zst": b"psig"}, b"fsig",
    DatabaseAnswer("d" * 64, "f" * 64, ".zst", b"{}", {"c" * 64: b"chunk"}, ["old.pkg.tar.zst"]),
)  # fmt: skip


def test_an_answer_round_trips_and_a_refusal_has_no_log_fields() -> None:
    assert JobResult.from_json(ANSWER.to_json()) == ANSWER
    refused = JobResult.refused("j", "no")
    assert JobResult.from_json(refused.to_json()) == refused
    assert not refused.accepted and refused.log_index is None and refused.checkpoint is None


@pytest.mark.parametrize(
    "change",
    [{"decision": "yes"}, {"log_index": "7"}, {"log_index": True}, {"signature": "not b64!"},
     {"reasons": "one"}, {"inclusion_proof": [1]}, {"databases": {"db_sha256": 1}},
     {"databases": {"index": "e30=", "extra": 1}}, {"package_signatures": []}, {"forged": 1}],
)  # fmt: skip
def test_a_malformed_answer_is_refused(change: dict[str, object]) -> None:
    with pytest.raises(MalformedAnswerError):
        JobResult.from_json(ANSWER.to_json() | change)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from([*ANSWER.to_json(), "x"]), JSON, max_size=6) | JSON)
def test_any_json_is_an_answer_or_a_malformed_answer(doc: object) -> None:
    with contextlib.suppress(MalformedAnswerError):
        JobResult.from_json(doc)
