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
import io
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reposeal import canonical
from reposeal.alpm.limits import DEFAULT_LIMITS
from reposeal.alpm.safeio import read_limited
from reposeal.enclave.dryrun import db_job, packages_job, refuse_without_sandbox
from reposeal.enclave.home import EnclaveHome, holds
from reposeal.enclave.records import load_records, transition_entry
from reposeal.enclave.sandbox import WorkerPool
from reposeal.errors import ReposealError, SigningError
from reposeal.evidence.files import read_document
from reposeal.faults import fault_point
from reposeal.fsio import atomic_write, write_all
from reposeal.openpgp.signer import Signer, SignOptions
from reposeal.openpgp.verify import Keyring, verify_detached
from reposeal.policy.decide import PackageRecord
from reposeal.policy.document import Policy, verify_policy
from reposeal.repo.lock import database_lock
from reposeal.translog.store import TransparencyLog

NOTATION_POLICY = "policy@reposeal.dev"
NOTATION_LOG_INDEX = "log-index@reposeal.dev"
NOTATION_LOG = "log@reposeal.dev"


@dataclass
class JobResult:
    job_id: str
    decision: str
    reasons: list[str]
    log_index: int
    signature: bytes | None
    checkpoint: bytes
    inclusion_proof: list[bytes]
    package_signatures: dict[str, bytes] = field(default_factory=dict)  # file name -> sig
    files_signature: bytes | None = None  # of the files database, when one was sent

    def to_json(self) -> dict[str, Any]:
        return {
            "job": self.job_id,
            "decision": self.decision,
            "reasons": self.reasons,
            "log_index": self.log_index,
            "signature": base64.b64encode(self.signature).decode() if self.signature else None,
            "checkpoint": self.checkpoint.decode(),
            "inclusion_proof": [base64.b64encode(h).decode() for h in self.inclusion_proof],
            "package_signatures": {
                name: base64.b64encode(sig).decode()
                for name, sig in sorted(self.package_signatures.items())
            },
            **(
                {"files_signature": base64.b64encode(self.files_signature).decode()}
                if self.files_signature
                else {}
            ),
        }


def _notations(home: EnclaveHome, policy: Policy, index: int) -> tuple[tuple[str, str], ...]:
    """Notations that lead a holder of the signature to its log entry."""
    return (
        (NOTATION_POLICY, str(policy.version)),
        (NOTATION_LOG_INDEX, str(index)),
        (NOTATION_LOG, home.config()["origin"]),
    )


def _db_options(home: EnclaveHome, policy: Policy, index: int) -> SignOptions:
    """Database signatures expire (policy) so frozen or replayed copies stop being trusted."""
    return SignOptions(
        expires_in=policy.db_signature_validity_seconds,
        notations=_notations(home, policy, index),
    )


def _pool(pool: WorkerPool | None, insecure_no_sandbox: bool) -> AbstractContextManager[WorkerPool]:
    """The caller's warm sandbox, or one started (and stopped) for this job alone."""
    if pool is not None:
        return nullcontext(pool)
    return WorkerPool(insecure_no_sandbox=insecure_no_sandbox, one_shot=True)


def _check_job_id(job_id: str) -> None:
    if not job_id or len(job_id) > 128 or not job_id.isprintable():
        raise SigningError("a job id is 1 to 128 printable characters")


def _logged(home: EnclaveHome, job_id: str) -> JobResult | None:
    """The answer already logged for ``job_id``, if any (idempotent retries). Call after
    ``home.load_state()``, which indexes the job ids of the log."""
    index = home.job_index(job_id)
    if index is None:
        return None
    with home.open_log() as log:
        doc = home.entry(log, index)
        latest = log.latest_checkpoint()
        assert latest is not None
        sig = doc.get("signature")
        packages = {n: base64.b64decode(v) for n, v in doc.get("package_signatures", {}).items()}
        files_sig = doc.get("files_signature")
        return JobResult(
            job_id,
            "refuse" if doc["type"] == "refusal" else "accept",
            doc.get("reasons", []),
            index,
            base64.b64decode(sig) if sig else None,
            latest[2],
            log.inclusion_proof(index, latest[0]),
            packages,
            base64.b64decode(files_sig) if files_sig else None,
        )


def sign_db(
    home: EnclaveHome,
    job_id: str,
    repo: str,
    arch: str,
    db: Path,
    *,
    evidence: Path | None = None,
    packages: Path | None = None,
    insecure_no_sandbox: bool = False,
    gnupghome: Path | None = None,
    check_parent: bool = False,
    claimed_parent: str | None = None,
    pool: WorkerPool | None = None,
    files_db: Path | None = None,
) -> JobResult:
    """Sign the transition to ``db`` if the policy allows it (and ``files_db``, its files
    database, when given: checked against it and signed with it). With ``check_parent``,
    ``claimed_parent`` is the database the requester believes is the last signed one (None:
    the first); a stale or forked claim is refused before anything else."""
    refuse_without_sandbox(insecure_no_sandbox)
    _check_job_id(job_id)
    with database_lock(home.path / "enclave.lck", wait=60):
        home.complete_checkpoint(home.key(gnupghome))  # after a crash past the append
        state = home.load_state()  # verifies the whole log first
        done = _logged(home, job_id)
        if done is not None:
            return done
        last = state.last_db.get((repo, arch))
        records, chunks = canonical.dumps([]), None
        staged: list[bool] = []
        db_bytes = read_limited(db, DEFAULT_LIMITS.max_db_bytes, "database")  # read once
        files_bytes = None
        if files_db is not None:
            files_bytes = read_limited(files_db, DEFAULT_LIMITS.max_db_bytes, "files database")
        if check_parent and claimed_parent != last:
            result: dict[str, Any] = {
                "decision": "refuse",
                "repo": repo,
                "arch": arch,
                "parent": claimed_parent,
                "reasons": [
                    f"parent {claimed_parent or 'none'} is not the last database signed "
                    f"for {repo}/{arch} ({last or 'none'}): stale or forked request"
                ],
            }
        else:
            folder = packages or db.resolve().parent
            job = db_job(home, state, repo, arch, db_bytes, evidence, folder, files_bytes)
            with _pool(pool, insecure_no_sandbox) as workers:
                worker = job.run(home, workers, lambda: staged.append(_stage(home, evidence)))
            result, records, chunks = worker.decision, worker.records, worker.chunks
        records_sha, parsed = _checked_records(records)
        fault_point("after-decide")
        signer = home.signer(gnupghome)
        policy = home.policy()
        with home.open_log() as log:
            index = log.size
            signature = files_signature = None
            if result.get("decision") == "accept":
                files_sha = hashlib.sha256(files_bytes).hexdigest() if files_bytes else None
                if hashlib.sha256(db_bytes).hexdigest() != result.get(
                    "db_sha256"
                ) or files_sha != result.get("files_sha256"):
                    raise SigningError(
                        "the sandbox decided on other bytes than the enclave holds; "
                        "nothing was signed",
                        path=db,
                    )
                options = _db_options(home, policy, index)
                signature = _sign_verified(signer, db_bytes, options)
                if files_bytes is not None:
                    files_signature = _sign_verified(signer, files_bytes, options)
                fault_point("after-sign")
                home.store_db(db_bytes)
            _keep(home, records, chunks if signature else None, any(staged))
            chunks_sha = hashlib.sha256(chunks).hexdigest() if chunks and signature else None
            entry = transition_entry(
                result, job_id, signature, records_sha, chunks_sha, files_signature
            )
            note = home.append(log, entry, signer)
            fault_point("after-log-append")
            proof = log.inclusion_proof(index)
        home.load_state({records_sha: parsed})  # the new state, without reading it back
        return JobResult(
            job_id,
            str(result.get("decision")),
            list(result.get("reasons", [])),
            index,
            signature,
            note,
            proof,
            files_signature=files_signature,
        )


def _sign_verified(signer: Signer, data: bytes, options: SignOptions) -> bytes:
    """A detached signature over ``data``, checked before anyone sees it."""
    signature = signer.sign_detached(io.BytesIO(data), options)
    verify_detached(data, signature, Keyring.from_bytes(signer.certificate()))
    return signature


def _checked_records(records: bytes) -> tuple[str, dict[str, PackageRecord]]:
    """The records the worker derived, parsed once before anything is signed or logged:
    malformed records would stop every later replay of the log."""
    digest = hashlib.sha256(records).hexdigest()
    try:
        return digest, load_records(lambda _: records, digest)
    except (ValueError, KeyError, TypeError):
        raise SigningError("the worker returned malformed records; nothing was signed") from None


def _stage(home: EnclaveHome, evidence: Path | None) -> bool:
    """Copy the statements of a job into the home, named by their hash, while the worker
    decides (not yet durable: ``_keep`` syncs them with the records). Kept even for a
    refusal: ``audit`` can then show what a refused job rested on."""
    files: dict[Path, bytes] = {}
    for doc in sorted(evidence.glob("*.json")) if evidence is not None else []:
        try:
            raw, sigs = read_document(doc)
        except ReposealError:
            continue  # unreadable: the worker ignores it too, and says why
        statement = hashlib.sha256(raw).hexdigest()
        target = home.path / "evidence" / f"{statement}.json"
        if not holds(target, statement):
            files[target] = raw
        sig = target.with_name(target.name + ".sig")
        if not sig.exists() or sig.read_bytes() != sigs:
            files[sig] = sigs
    for path, data in files.items():
        atomic_write(path, data, durable=False)
    return bool(files)


def _keep(home: EnclaveHome, records: bytes, chunks: bytes | None, staged: bool) -> None:
    """Make the records (and chunk map) and the staged statements a log entry will name
    durable (one sync), before the entry is appended, so ``audit`` can replay them and the
    next transition can reuse them. Files are named by their content's hash."""
    files: dict[Path, bytes] = {}
    for blob in (records, chunks) if chunks else (records,):
        named = hashlib.sha256(blob).hexdigest()
        if not holds(home.records_path(named), named):
            files[home.records_path(named)] = blob
    write_all(files, sync=home.path if staged else None)


def refresh_db(
    home: EnclaveHome,
    job_id: str,
    repo: str,
    arch: str,
    db: Path,
    *,
    gnupghome: Path | None = None,
    files_db: Path | None = None,
) -> JobResult:
    """Re-sign the latest signed database of ``repo/arch`` with a fresh expiry (and its files
    database, when given). Any other database is refused: an old one must never regain a
    valid signature."""

    _check_job_id(job_id)
    with database_lock(home.path / "enclave.lck", wait=60):
        home.complete_checkpoint(home.key(gnupghome))
        state = home.load_state()
        done = _logged(home, job_id)
        if done is not None:
            return done
        db_bytes = read_limited(db, DEFAULT_LIMITS.max_db_bytes, "database")
        files_bytes = None
        if files_db is not None:
            files_bytes = read_limited(files_db, DEFAULT_LIMITS.max_db_bytes, "files database")
        digest = hashlib.sha256(db_bytes).hexdigest()
        files_digest = hashlib.sha256(files_bytes).hexdigest() if files_bytes else None
        last = state.last_db.get((repo, arch))
        last_files = home.last_files(repo, arch)
        policy = home.policy()
        signer = home.signer(gnupghome)
        with home.open_log() as log:
            index = log.size
            doc: dict[str, Any] = {
                "v": 1,
                "job": job_id,
                "repo": repo,
                "arch": arch,
                "db_sha256": digest,
                "policy_version": policy.version,
            }
            signature = files_signature = None
            if digest != last:
                doc.update(
                    type="refusal",
                    reasons=[
                        f"only the latest database signed for {repo}/{arch} is refreshed "
                        f"({(last or 'none')[:16]}…), not {digest[:16]}…"
                    ],
                )
            elif files_digest is not None and files_digest != last_files:
                doc.update(
                    type="refusal",
                    reasons=[
                        f"the files database sent ({files_digest[:16]}…) is not the one signed "
                        f"with the latest database of {repo}/{arch}"
                    ],
                )
            else:
                options = _db_options(home, policy, index)
                signature = _sign_verified(signer, db_bytes, options)
                doc.update(type="refresh", signature=base64.b64encode(signature).decode())
                if files_bytes is not None:
                    files_signature = _sign_verified(signer, files_bytes, options)
                    doc.update(
                        files_sha256=files_digest,
                        files_signature=base64.b64encode(files_signature).decode(),
                    )
            note = home.append(log, canonical.dumps(doc), signer)
            proof = log.inclusion_proof(index)
        return JobResult(
            job_id,
            "accept" if signature else "refuse",
            doc.get("reasons", []),
            index,
            signature,
            note,
            proof,
            files_signature=files_signature,
        )


def _revoked_too_early(home: EnclaveHome, new: Policy) -> list[str]:
    """A former key is revoked only once its successor has signed for the policy's overlap
    (users' keyrings, and databases signed meanwhile, catch up first)."""
    reasons = []
    for fpr in new.repo_keys("revoked").fingerprints():
        since = home.retired_since(fpr)
        if since is not None and time.time() - since < new.key_overlap_seconds:
            reasons.append(
                f"key {fpr} stopped signing {(time.time() - since) / 3600:.1f} hours ago; policy "
                f"v{new.version} wants its successor signing for "
                f"{new.key_overlap_seconds / 3600:.1f} hours before revoking it"
            )
    return reasons


def _signed_before(home: EnclaveHome, log: TransparencyLog, sha256: str) -> bytes | None:
    """The signature logged for a package file with this sha256, if any."""
    index = home.package_signature_index(sha256)
    if index is None:
        return None
    doc = home.entry(log, index)
    return base64.b64decode(doc["by_sha256"][sha256])


def sign_packages(
    home: EnclaveHome,
    job_id: str,
    repo: str,
    packages: Path,
    *,
    evidence: Path | None = None,
    insecure_no_sandbox: bool = False,
    gnupghome: Path | None = None,
    pool: WorkerPool | None = None,
) -> JobResult:
    """Sign package files if the policy allows; a file signed before gets the same
    signature back (never two signatures for one version)."""
    refuse_without_sandbox(insecure_no_sandbox)
    _check_job_id(job_id)
    with database_lock(home.path / "enclave.lck", wait=60):
        home.complete_checkpoint(home.key(gnupghome))
        state = home.load_state()
        signer = home.signer(gnupghome)
        done = _logged(home, job_id)
        if done is not None:
            return done
        staged: list[bool] = []
        job = packages_job(home, state, repo, packages, evidence)
        with _pool(pool, insecure_no_sandbox) as workers:
            worker = job.run(home, workers, lambda: staged.append(_stage(home, evidence)))
        result, records = worker.decision, worker.records
        records_sha, parsed = _checked_records(records)
        fault_point("after-decide")
        policy = home.policy()
        with home.open_log() as log:
            index = log.size
            signatures: dict[str, bytes] = {}
            by_sha: dict[str, str] = {}
            accepted = result.get("decision") == "accept"
            if accepted:
                keyring = Keyring.from_bytes(signer.certificate())
                options = SignOptions(notations=_notations(home, policy, index))
                for rec in parsed.values():
                    path = packages / rec.filename
                    sig = _signed_before(home, log, rec.sha256)
                    if sig is None:
                        with open(path, "rb") as f:
                            sig = signer.sign_detached(f, options)
                        with open(path, "rb") as f:
                            if hashlib.sha256(f.read()).hexdigest() != rec.sha256:
                                raise SigningError(f"{path.name} changed while it was signed")
                        verify_detached(path, sig, keyring)
                    signatures[rec.filename] = sig
                    by_sha[rec.sha256] = base64.b64encode(sig).decode()
            _keep(home, records, None, any(staged))
            doc: dict[str, Any] = {
                "v": 1,
                "type": "packages" if accepted else "refusal",
                "job": job_id,
                "repo": repo,
                "policy_version": result.get("policy_version"),
                "records": records_sha,
                "evidence": result.get("evidence", []),
            }
            if accepted:
                doc["by_sha256"] = by_sha
                doc["package_signatures"] = {
                    n: base64.b64encode(v).decode() for n, v in signatures.items()
                }
            else:
                doc["reasons"] = result.get("reasons", [])
            note = home.append(log, canonical.dumps(doc), signer)
            fault_point("after-log-append")
            proof = log.inclusion_proof(index)
        home.load_state({records_sha: parsed})
        return JobResult(
            job_id,
            "accept" if accepted else "refuse",
            list(result.get("reasons", [])),
            index,
            None,
            note,
            proof,
            signatures,
        )


def rotate_policy(
    home: EnclaveHome,
    job_id: str,
    document: Path,
    *,
    gnupghome: Path | None = None,
) -> JobResult:
    """Put a new policy in force if it may replace the current one (a higher version,
    signed by the current policy's admin threshold and by its own). The rotation is a log
    entry, so ``audit`` knows which policy each later signature was made under; a refused
    rotation is logged too."""
    _check_job_id(job_id)
    raw, sigs = read_document(document)
    with database_lock(home.path / "enclave.lck", wait=60):
        home.complete_checkpoint(home.key(gnupghome))
        home.load_state()
        signer = home.signer(gnupghome)
        done = _logged(home, job_id)
        if done is not None:
            return done
        current = home.policy()
        digest = hashlib.sha256(raw).hexdigest()
        doc: dict[str, Any] = {"v": 1, "job": job_id, "policy_sha256": digest}
        try:
            new = verify_policy(raw, sigs, previous=current)
        except ReposealError as exc:
            doc.update(type="refusal", reasons=[f"policy rotation refused: {exc}"])
        else:
            early = _revoked_too_early(home, new)
            if early:
                doc.update(type="refusal", reasons=early)
            elif new.repository_keys and not new.may_sign(home.signer_fingerprint()):
                doc.update(
                    type="refusal",
                    reasons=[
                        f"policy v{new.version} does not name the key the enclave signs with "
                        f"({home.signer_fingerprint()}): switch keys first (`enclave signer`, "
                        "under a policy naming the new key as next), then revoke the old one"
                    ],
                )
            else:
                home.store_policy(raw, sigs)
                doc.update(
                    type="policy",
                    version=new.version,
                    previous=home.policy_sha256(),
                    time=int(time.time()),
                )
        with home.open_log() as log:
            index = log.size
            note = home.append(log, canonical.dumps(doc), signer)
            proof = log.inclusion_proof(index)
        home.load_state()
        if doc["type"] == "policy":  # the copy for people follows the log
            atomic_write(home.path / "policy.json.sig", sigs)
            atomic_write(home.path / "policy.json", raw)
        return JobResult(
            job_id,
            "accept" if doc["type"] == "policy" else "refuse",
            list(doc.get("reasons", [])),
            index,
            None,
            note,
            proof,
        )
