"""One signing job, end to end on the enclave: check in the sandbox, sign, log, answer.

Order, so a crash at any step leaves one answer per job: the decision is made in the
sandbox; only on accept is the database signed (with the policy's expiry and notations naming
the policy version and the log index); the entry (signature or refusal) is appended to the log
and a checkpoint signed; only then is anything returned. A job id already in the log returns
what was logged, so a retried job never gets a second signature.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from reposeal import canonical
from reposeal.enclave.answers import answer_of, logged_answer, request_digest
from reposeal.enclave.decision import DIGESTS, Decision
from reposeal.enclave.home import EnclaveHome, SignedDatabases
from reposeal.enclave.home_files import holds
from reposeal.enclave.jobspec import packages_job, refuse_without_sandbox, transition_job
from reposeal.enclave.pkgbuilds import approved_texts
from reposeal.enclave.pkgbuilds import path_in as pkgbuild_path
from reposeal.enclave.proposal import Proposal, stale_reason
from reposeal.enclave.records import load_records
from reposeal.enclave.sandbox import WorkerPool
from reposeal.enclave.signing import db_options, notations, sign_verified
from reposeal.errors import ReposealError, SigningError
from reposeal.evidence.files import read_document
from reposeal.faults import fault_point
from reposeal.fsio import atomic_write, write_all
from reposeal.openpgp.signer import SignOptions
from reposeal.openpgp.verify import Keyring, verify_detached
from reposeal.policy.document import verify_policy
from reposeal.policy.entries import LogEntry
from reposeal.policy.keys import rotation_problems
from reposeal.policy.state import PackageRecord, SigningState
from reposeal.protocol.answers import JobResult
from reposeal.protocol.lock import database_lock


def _pool(pool: WorkerPool | None, insecure_no_sandbox: bool) -> AbstractContextManager[WorkerPool]:
    """The caller's warm sandbox, or one started (and stopped) for this job alone."""
    if pool is not None:
        return nullcontext(pool)
    return WorkerPool(insecure_no_sandbox=insecure_no_sandbox, one_shot=True)


def _check_job_id(job_id: str) -> None:
    if not job_id or len(job_id) > 128 or not job_id.isprintable():
        raise SigningError("a job id is 1 to 128 printable characters")


@contextmanager
def _one_job(home: EnclaveHome, job_id: str) -> Iterator[SigningState]:
    """The one job the enclave runs at a time: its lock held, a checkpoint completed if a
    crash came after the last append, and the signing state replayed from the whole log."""
    _check_job_id(job_id)
    with database_lock(home.path / "enclave.lck", wait=60):
        home.complete_checkpoint(home.key())
        yield home.load_state()


def propose(
    home: EnclaveHome,
    job_id: str,
    proposal: Proposal,
    packages: Path,
    *,
    evidence: Path | None = None,
    insecure_no_sandbox: bool = False,
    pool: WorkerPool | None = None,
    request: str | None = None,
    keyring: bytes | None = None,
) -> JobResult:
    """Write, check and sign the next databases of a repository if the policy allows the
    proposed transition. The enclave starts from the databases it signed last (its own
    bytes), never from anything the requester sends but package files and evidence. An
    adoption (``proposal.adopt``) also takes the packagers' ``keyring`` its statement names."""
    refuse_without_sandbox(insecure_no_sandbox)
    request = request or request_digest(proposal.to_json())
    p = proposal
    with _one_job(home, job_id) as state:
        done = logged_answer(home, job_id, request)
        if done is not None:
            return done
        last = home.last_databases(p.repo, p.arch)
        staged: list[_Staged] = []
        blobs: dict[str, bytes] = {}
        refusal = stale_reason(p, last)
        if refusal is not None:
            result = Decision.refusal(refusal)
        else:
            job = transition_job(home, state, p, last, packages, evidence, keyring)
            with _pool(pool, insecure_no_sandbox) as workers:
                worker = job.run(home, workers, lambda: staged.append(_stage(home, evidence)))
            result, blobs = worker.decision, worker.blobs
        accepted = result.accepted
        records_sha, parsed = _checked_records(blobs.get("records", canonical.dumps([])))
        if accepted:
            _check_blobs(result, blobs)
        fault_point("after-decide")
        signer = home.signer()
        policy = home.policy()
        with home.open_log() as log:
            index = log.size
            entry = LogEntry(
                "refusal",
                job=job_id,
                request=request,
                repo=p.repo,
                arch=p.arch,
                parent=last.db if last else None,
                policy_version=policy.version,
                evidence=result.evidence,
                evidence_signatures=_rested_on(result, staged),
                reasons=result.reasons,
            )
            signature = files_signature = None
            if accepted:
                options = db_options(home, policy, index)
                signature = sign_verified(signer, blobs["db"], options)
                files_signature = sign_verified(signer, blobs["files"], options)
                fault_point("after-sign")
                dbs = {home.path / "dbs" / str(result.digest(k)): blobs[k] for k in DB_PARTS}
                texts = approved_texts(evidence, (r.pkgbuild_sha256 for r in parsed.values()))
                write_all(
                    dbs
                    | _records_files(home, blobs["records"])
                    | {pkgbuild_path(home.path, d): t for d, t in texts.items()},
                    sync=home.path,
                )
                entry = replace(
                    entry,
                    type="db",
                    reasons=(),
                    db_sha256=result.db_sha256,
                    files_sha256=result.files_sha256,
                    index_sha256=result.index_sha256,
                    moved_from=result.moved_from,
                    removes=result.removes,
                    replaced=result.replaced,
                    used_overrides=result.used_overrides,
                    used_removals=result.used_removals,
                    admitted=result.admitted,
                    records=records_sha,
                    compression=last.compression if last else p.compression,
                    parent_files=last.files if last else None,
                    parent_index=last.index if last else None,
                    signature=base64.b64encode(signature).decode(),
                    files_signature=base64.b64encode(files_signature).decode(),
                    pkgbuilds=tuple(sorted(texts)),
                    adoption=result.adoption,
                    package_signatures=result.package_signatures if result.adoption else {},
                )
            elif any(s.wrote for s in staged):
                write_all({}, sync=home.path)
            note = home.append(log, canonical.dumps(entry.to_json()), signer)
            fault_point("after-log-append")
            proof = log.inclusion_proof(index)
        home.load_state({records_sha: parsed})  # the new state, without reading it back
        if accepted and last is not None:
            _prune(home, last)
        return JobResult(
            job_id,
            "accept" if accepted else "refuse",
            list(entry.reasons),
            index,
            signature,
            note,
            proof,
            files_signature=files_signature,
            databases=answer_of(home, entry) if accepted else None,
        )


DB_PARTS = ("db", "files", "index")


def _prune(home: EnclaveHome, parent: SignedDatabases) -> None:
    """Forget the databases before ``parent``: the next transition starts from the latest,
    a retried job needs the latest and its parent, and every older one is on the mirrors'
    archive and named by hash in the log (``audit`` re-reads what it finds)."""
    with home.open_log() as log:
        entry = home.entry(log, parent.log_index)
    kept = {parent.db, parent.files, parent.index}
    for held in home.all_last_databases().values():
        kept |= {held.db, held.files, held.index}
    for digest in (entry.parent, entry.parent_files, entry.parent_index):
        if digest is not None and digest not in kept:
            (home.path / "dbs" / digest).unlink(missing_ok=True)


def _check_blobs(result: Decision, blobs: dict[str, bytes]) -> None:
    """The worker's bytes are the ones it decided on (hash by hash)."""
    for k in DIGESTS:
        data = blobs.get(k)
        if data is None or hashlib.sha256(data).hexdigest() != result.digest(k):
            raise SigningError(f"the worker's {k} do not match its decision; nothing was signed")


def _records_files(home: EnclaveHome, records: bytes) -> dict[Path, bytes]:
    named = hashlib.sha256(records).hexdigest()
    return {} if holds(home.records_path(named), named) else {home.records_path(named): records}


def dry_run(
    home: EnclaveHome,
    proposal: Proposal,
    packages: Path,
    *,
    evidence: Path | None = None,
    insecure_no_sandbox: bool = False,
) -> dict[str, Any]:
    """Would the enclave sign this transition, and if not, why? No key, no log."""
    refuse_without_sandbox(insecure_no_sandbox)
    state = home.load_state()
    last = home.last_databases(proposal.repo, proposal.arch)
    refusal = stale_reason(proposal, last)
    if refusal is not None:
        return Decision.refusal(refusal).to_json()
    job = transition_job(home, state, proposal, last, packages, evidence)
    with WorkerPool(insecure_no_sandbox=insecure_no_sandbox, one_shot=True) as workers:
        return job.run(home, workers).decision.to_json()


def _checked_records(records: bytes) -> tuple[str, dict[str, PackageRecord]]:
    """The records the worker derived, parsed once before anything is signed or logged:
    malformed records would stop every later replay of the log."""
    digest = hashlib.sha256(records).hexdigest()
    try:
        return digest, load_records(lambda _: records, digest)
    except (ValueError, KeyError, TypeError):
        raise SigningError("the worker returned malformed records; nothing was signed") from None


@dataclass(frozen=True)
class _Staged:
    """What ``_stage`` did: whether it wrote anything (the entry's write then syncs it),
    and the hash of every statement and signature file the home now holds for the job."""

    wrote: bool
    held: frozenset[str]


def _stage(home: EnclaveHome, evidence: Path | None) -> _Staged:
    """Copy the statements of a job and their signature files into the home, each named by
    its hash (never overwritten: another job may bring the same statement with other
    signatures), while the worker decides (not yet durable: the entry's write syncs them).
    Kept even for a refusal: ``audit`` can then show what a refused job rested on."""
    files: dict[Path, bytes] = {}
    held: set[str] = set()
    for doc in sorted(evidence.glob("*.json")) if evidence is not None else []:
        try:
            raw, sigs = read_document(doc)
        except ReposealError:
            continue  # unreadable: the worker ignores it too, and says why
        for data, suffix in ((raw, ".json"), (sigs, ".sig")):
            digest = hashlib.sha256(data).hexdigest()
            target = home.path / "evidence" / f"{digest}{suffix}"
            if not holds(target, digest):
                files[target] = data
            held.add(digest)
    for path, data in files.items():
        atomic_write(path, data, durable=False)
    return _Staged(bool(files), frozenset(held))


def _rested_on(result: Decision, staged: list[_Staged]) -> dict[str, tuple[str, ...]]:
    """The statements and signature files the worker says it used, each one staged into
    the home under its hash: what the log entry names is what the decision rested on."""
    named = result.evidence_signatures
    if set(named) != set(result.evidence):
        raise SigningError("the worker's account of its evidence is malformed; nothing was signed")
    held = frozenset().union(*(s.held for s in staged))
    for statement, sigs in named.items():
        for digest in (statement, *sigs):
            if digest not in held:
                raise SigningError(
                    f"evidence {digest[:16]}… changed or vanished while the job ran; "
                    "nothing was signed"
                )
    return {k: tuple(sorted(v)) for k, v in sorted(named.items())}


def refresh_db(
    home: EnclaveHome,
    job_id: str,
    repo: str,
    arch: str,
    *,
    expect: str | None = None,
    request: str | None = None,
) -> JobResult:
    """Re-sign the latest databases the enclave wrote for ``repo/arch`` (its own bytes) with
    a fresh expiry. ``expect``: the sync database the requester holds; any other than the
    latest is refused, so an old database never regains a valid signature."""
    request = request or request_digest(
        {"kind": "refresh", "repo": repo, "arch": arch, "expect": expect}
    )
    with _one_job(home, job_id):
        done = logged_answer(home, job_id, request)
        if done is not None:
            return done
        last = home.last_databases(repo, arch)
        policy = home.policy()
        signer = home.signer()
        with home.open_log() as log:
            index = log.size
            entry = LogEntry(
                "refusal",
                job=job_id,
                request=request,
                repo=repo,
                arch=arch,
                policy_version=policy.version,
            )
            signature = files_signature = None
            if last is None or (expect is not None and expect != last.db):
                entry = replace(
                    entry,
                    reasons=(
                        f"only the latest database signed for {repo}/{arch} is refreshed "
                        f"({(last.db if last else 'none')[:16]}…), not {(expect or '')[:16]}…",
                    ),
                )
            else:
                options = db_options(home, policy, index)
                signature = sign_verified(signer, home.read_db(last.db), options)
                files_signature = sign_verified(signer, home.read_db(last.files), options)
                entry = replace(
                    entry,
                    type="refresh",
                    db_sha256=last.db,
                    files_sha256=last.files,
                    signature=base64.b64encode(signature).decode(),
                    files_signature=base64.b64encode(files_signature).decode(),
                )
            note = home.append(log, canonical.dumps(entry.to_json()), signer)
            proof = log.inclusion_proof(index)
        return JobResult(
            job_id,
            "accept" if signature else "refuse",
            list(entry.reasons),
            index,
            signature,
            note,
            proof,
            files_signature=files_signature,
        )


def _listing_digest(folder: Path) -> str:
    """The names and sizes of a job's package files (what a packages request is)."""
    found = sorted((p.name, p.stat().st_size) for p in folder.iterdir() if p.is_file())
    return hashlib.sha256(json.dumps(found).encode()).hexdigest()


def sign_packages(
    home: EnclaveHome,
    job_id: str,
    repo: str,
    packages: Path,
    *,
    evidence: Path | None = None,
    insecure_no_sandbox: bool = False,
    pool: WorkerPool | None = None,
    request: str | None = None,
) -> JobResult:
    """Sign package files if the policy allows; a file signed before gets the same
    signature back (never two signatures for one version)."""
    refuse_without_sandbox(insecure_no_sandbox)
    request = request or request_digest(
        {"kind": "packages", "repo": repo, "files": _listing_digest(packages)}
    )
    with _one_job(home, job_id) as state:
        signer = home.signer()
        done = logged_answer(home, job_id, request)
        if done is not None:
            return done
        staged: list[_Staged] = []
        job = packages_job(home, state, repo, packages, evidence)
        with _pool(pool, insecure_no_sandbox) as workers:
            worker = job.run(home, workers, lambda: staged.append(_stage(home, evidence)))
        result = worker.decision
        records = worker.blobs.get("records", canonical.dumps([]))
        records_sha, parsed = _checked_records(records)
        fault_point("after-decide")
        policy = home.policy()
        with home.open_log() as log:
            index = log.size
            signatures: dict[str, bytes] = {}
            by_sha: dict[str, str] = {}
            accepted = result.accepted
            if accepted:
                keyring = Keyring.from_bytes(signer.certificate())
                options = SignOptions(notations=notations(home, policy, index))
                for rec in parsed.values():
                    path = packages / rec.filename
                    logged = state.signatures.get(rec.sha256)
                    sig = base64.b64decode(logged) if logged is not None else None
                    if sig is None:
                        with open(path, "rb") as f:
                            sig = signer.sign_detached(f, options)
                        with open(path, "rb") as f:
                            if hashlib.sha256(f.read()).hexdigest() != rec.sha256:
                                raise SigningError(f"{path.name} changed while it was signed")
                        verify_detached(path, sig, keyring)
                    signatures[rec.filename] = sig
                    by_sha[rec.sha256] = base64.b64encode(sig).decode()
            write_all(_records_files(home, records), sync=home.path)
            entry = LogEntry(
                "packages" if accepted else "refusal",
                job=job_id,
                request=request,
                repo=repo,
                policy_version=result.policy_version,
                records=records_sha,
                evidence=result.evidence,
                evidence_signatures=_rested_on(result, staged),
                reasons=() if accepted else result.reasons,
                by_sha256=by_sha,
                package_signatures={n: base64.b64encode(v).decode() for n, v in signatures.items()},
            )
            note = home.append(log, canonical.dumps(entry.to_json()), signer)
            fault_point("after-log-append")
            proof = log.inclusion_proof(index)
        home.load_state({records_sha: parsed})
        return JobResult(
            job_id,
            "accept" if accepted else "refuse",
            list(result.reasons),
            index,
            None,
            note,
            proof,
            signatures,
        )


def rotate_policy(home: EnclaveHome, job_id: str, document: Path) -> JobResult:
    """Put a new policy in force if it may replace the current one (a higher version,
    signed by the current policy's admin threshold and by its own). The rotation is a log
    entry, so ``audit`` knows which policy each later signature was made under; a refused
    rotation is logged too."""
    _check_job_id(job_id)
    raw, sigs = read_document(document)
    with _one_job(home, job_id):
        signer = home.signer()
        digest = hashlib.sha256(raw).hexdigest()
        request = request_digest({"kind": "policy", "policy": digest, "sigs": sigs.hex()})
        done = logged_answer(home, job_id, request)
        if done is not None:
            return done
        current = home.policy()
        entry = LogEntry("refusal", job=job_id, request=request, policy_sha256=digest)
        try:
            new = verify_policy(raw, sigs, previous=current)
        except ReposealError as exc:
            entry = replace(entry, reasons=(f"policy rotation refused: {exc}",))
        else:
            retired = {f: home.retired_since(f) for f in new.repo_keys("revoked").fingerprints()}
            problems = rotation_problems(new, home.signer_fingerprint(), retired, time.time())
            if problems:
                entry = replace(entry, reasons=tuple(problems))
            else:
                home.store_policy(raw, sigs)
                entry = replace(
                    entry,
                    type="policy",
                    version=new.version,
                    previous=home.policy_sha256(),
                    time=int(time.time()),
                )
        with home.open_log() as log:
            index = log.size
            note = home.append(log, canonical.dumps(entry.to_json()), signer)
            proof = log.inclusion_proof(index)
        home.load_state()
        if entry.type == "policy":  # the copy for people follows the log
            atomic_write(home.path / "policy.json.sig", sigs)
            atomic_write(home.path / "policy.json", raw)
        return JobResult(
            job_id,
            "accept" if entry.type == "policy" else "refuse",
            list(entry.reasons),
            index,
            None,
            note,
            proof,
        )
