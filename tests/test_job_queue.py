"""The bridge's job queue, in-process (the e2e tests reach it over HTTPS): a job id names one
request, a taken job comes back after its lease or when the enclave restarts, an answer is
stored once, and blobs are kept by their hash."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from reposeal.errors import InputError
from reposeal.openpgp.spec import signer_from_spec
from reposeal.repo import bridge
from reposeal.repo.bridge import JobQueue


def spec(job: str, **more: object) -> dict[str, object]:
    return {"id": job, "kind": "transition", "repo": "core", "arch": "x86_64", "files": {}} | more


def test_one_id_one_request(tmp_path: Path) -> None:
    q = JobQueue(tmp_path)
    assert q.submit(spec("a")) and not q.submit(spec("a")), "the same request again: a no-op"
    with pytest.raises(ValueError, match="different content"):
        q.submit(spec("a", add=["x"]))


def test_taken_jobs_come_back_after_the_lease_or_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    q = JobQueue(tmp_path)
    q.submit(spec("a"))
    q.submit(spec("b"))
    assert q.take()["id"] == "a" and q.take()["id"] == "b" and q.take() is None
    assert q.release() == 2, "the enclave restarted: both come back"
    assert q.take()["id"] == "a"
    clock = [bridge.time.time()]
    monkeypatch.setattr(bridge.time, "time", lambda: clock[0])  # move the clock, not sleep
    clock[0] += bridge.LEASE_SECONDS + 1
    assert q.take()["id"] in ("a", "b"), "a lease that ran out hands the job out again"


def test_an_answer_is_stored_once(tmp_path: Path) -> None:
    q = JobQueue(tmp_path)
    q.submit(spec("a"))
    assert q.finish("a", {"decision": "accept"}) and not q.finish("a", {"decision": "accept"})
    with pytest.raises(ValueError, match="different result"):
        q.finish("a", {"decision": "refuse"})
    with pytest.raises(KeyError):
        q.finish("nope", {})
    assert q.take() is None, "an answered job is not handed out"


def test_blobs_are_kept_by_their_hash(tmp_path: Path) -> None:
    q = JobQueue(tmp_path)
    digest = q.keep_blob(b"bytes")
    assert digest == hashlib.sha256(b"bytes").hexdigest()
    assert (q.blobs / digest).read_bytes() == b"bytes" and q.keep_blob(b"bytes") == digest


@pytest.mark.parametrize("bad", ["", "soft", "ftp:x", "gpgx:FPR", "PKCS11:x"])
def test_a_signer_spec_names_its_backend(bad: str) -> None:
    with pytest.raises(InputError, match="unknown signer"):
        signer_from_spec(bad)
