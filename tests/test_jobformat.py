"""A job as the enclave takes it from the bridge: every field checked before any file is
fetched, a malformed one refused with a reason, and the job as sent kept for its digest."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given

from reposeal.errors import ReposealError
from reposeal.protocol.jobformat import BridgeJob
from tests.strategies import JSON

SHA = "a" * 64
GOOD = {"id": "j-1", "kind": "transition", "repo": "core", "arch": "x86_64",
        "files": {"packages/a-1-1-any.pkg.tar.zst": SHA}, "add": ["a-1-1-any.pkg.tar.zst"],
        "moves": [{"file": "b-1-1-any.pkg.tar.zst", "from": "testing"}], "remove": ["c"],
        "parent": None, "compression": ".zst"}  # fmt: skip
# what the repo machine's bridge queues is what the enclave takes: both read it as this


def test_a_job_reads_as_sent() -> None:
    job = BridgeJob.from_json(GOOD)
    assert (job.id, job.kind, job.repo, job.arch) == ("j-1", "transition", "core", "x86_64")
    assert job.moves == (("b-1-1-any.pkg.tar.zst", "testing"),) and job.remove == ("c",)
    assert job.claims_parent and job.parent is None, "null: the first databases"
    assert job.request == GOOD
    unclaimed = BridgeJob.from_json({k: v for k, v in GOOD.items() if k != "parent"})
    assert not unclaimed.claims_parent
    policy = BridgeJob.from_json({"id": "p", "kind": "policy", "files": {}})
    assert policy.repo is None and policy.arch is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"id": "a/b"}, "job id"),
        ({"id": 5}, "job id"),
        ({"kind": "db"}, "never takes a database"),
        ({"repo": "../x"}, "invalid"),
        ({"repo": None}, "expected a name"),
        ({"arch": ["x86_64"]}, "expected an architecture"),
        ({"files": {"../../etc/cron.d/x": SHA}}, "job file is malformed"),
        ({"files": {"packages/x": "not-a-hash"}}, "job file is malformed"),
        ({"files": {"db/core.db.tar": SHA}}, "job file is malformed"),
        ({"files": []}, "must list its files"),
        ({"add": "a"}, "add is a list of names"),
        ({"remove": [1]}, "remove is a list of names"),
        ({"moves": [{"file": "x"}]}, "{file, from} pairs"),
        ({"parent": 5}, "parent is a sha256 or null"),
        ({"parent": "HEAD"}, "parent is a sha256 or null"),
        ({"expect": ["x"]}, "expected database"),
        ({"expect": "b" * 63}, "expected database"),
        ({"compression": 1}, "compression"),
    ],
)
def test_a_malformed_field_is_refused_saying_which(change: dict[str, object], message: str) -> None:
    with pytest.raises(ReposealError, match=message):
        BridgeJob.from_json(GOOD | change)


@given(JSON)
def test_any_json_is_a_job_or_a_typed_refusal(doc: object) -> None:
    if isinstance(doc, dict):
        for candidate in (doc, GOOD | doc):
            with contextlib.suppress(ReposealError):
                BridgeJob.from_json(candidate)
