"""What a job answers, and the answer a job id already has: a job id logged once answers
its request the same way forever, so a retried job never gets a second signature."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

from reposeal import canonical
from reposeal.alpm import chunked
from reposeal.enclave.home import EnclaveHome
from reposeal.errors import SigningError
from reposeal.policy.entries import LogEntry
from reposeal.protocol.answers import DatabaseAnswer, JobResult


def request_digest(doc: dict[str, Any]) -> str:
    """What a job asks for, as one hash: a logged job id answers only the identical request."""
    return hashlib.sha256(canonical.dumps(doc)).hexdigest()


def answer_of(home: EnclaveHome, entry: LogEntry) -> DatabaseAnswer | None:
    """The databases a logged transition wrote, as the repo machine gets them."""
    if entry.type != "db" or entry.db_sha256 is None or entry.files_sha256 is None:
        return None
    parts = {"db": home.read_db(entry.db_sha256), "files": home.read_db(entry.files_sha256)}
    index = home.read_db(str(entry.index_sha256))
    new = chunked.pieces(json.loads(index), parts)
    old: dict[str, bytes] = {}
    if entry.parent is not None:
        parent = {"db": home.read_db(entry.parent), "files": home.read_db(str(entry.parent_files))}
        old = chunked.pieces(json.loads(home.read_db(str(entry.parent_index))), parent)
    return DatabaseAnswer(
        entry.db_sha256,
        entry.files_sha256,
        str(entry.compression),
        index,
        {d: c for d, c in new.items() if d not in old},
        list(entry.replaced),
    )


def logged_answer(home: EnclaveHome, job_id: str, request: str) -> JobResult | None:
    """The answer already logged for ``job_id``, if any (idempotent retries); a job id
    logged for another request is refused. Call after ``home.load_state()``."""
    index = home.job_index(job_id)
    if index is None:
        return None
    with home.open_log() as log:
        entry = home.entry(log, index)
        if entry.request != request:
            raise SigningError(
                f"job id {job_id} was used for another request (log entry {index}); a job id "
                "names one request forever: use a new id"
            )
        latest = log.latest_checkpoint()
        if latest is None:
            raise SigningError("the log has no checkpoint; nothing was answered")
        return JobResult(
            job_id,
            "refuse" if entry.type == "refusal" else "accept",
            list(entry.reasons),
            index,
            _b64(entry.signature),
            latest[2],
            log.inclusion_proof(index, latest[0]),
            {n: base64.b64decode(v) for n, v in entry.package_signatures.items()},
            _b64(entry.files_signature),
            answer_of(home, entry),
        )


def _b64(value: str | None) -> bytes | None:
    return base64.b64decode(value) if value else None


def write_signed_databases(home: EnclaveHome, result: JobResult, repo: str, out: Path) -> None:
    """The databases a job signed (from the enclave's own copy) and their signatures in
    ``out``, with REPO.db and REPO.files (and .sig) linked as repo-add makes them."""
    from reposeal.fsio import write_all

    answer = result.databases
    if answer is None or result.signature is None or result.files_signature is None:
        return
    db, files = f"{repo}.db.tar{answer.compression}", f"{repo}.files.tar{answer.compression}"
    write_all({
        out / db: home.read_db(answer.db_sha256),
        out / files: home.read_db(answer.files_sha256),
        out / f"{db}.sig": result.signature,
        out / f"{files}.sig": result.files_signature,
    })  # fmt: skip
    link_like_repo_add(out, repo, answer.compression)


def link_like_repo_add(out: Path, repo: str, compression: str) -> None:
    """REPO.db and REPO.files (and their .sig) as repo-add makes them: what pacman fetches."""
    from reposeal.fsio import replace_with_symlink

    for part in ("db", "files"):
        for suffix in ("", ".sig"):
            target = f"{repo}.{part}.tar{compression}{suffix}"
            replace_with_symlink(out / f"{repo}.{part}{suffix}", target)
