"""`enclave audit`: replay a log and its evidence through ``decide``; anyone can run it.

Every signature in the log must be one the policy allowed given everything signed before it.
Needs no key: the log, the evidence it names (by sha256), the policy, and optionally the
signed databases to check the signatures themselves.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reposeal.enclave.records import load_records, read_entry
from reposeal.errors import ReposealError
from reposeal.evidence.files import read_document
from reposeal.evidence.quorum import Signed, load_signed
from reposeal.evidence.statements import from_bytes
from reposeal.openpgp.verify import Keyring, verify_as_made
from reposeal.policy.decide import (
    Decision,
    Evidence,
    PackageRecord,
    Request,
    SigningState,
    apply,
    apply_packages,
    decide,
    decide_packages,
)
from reposeal.policy.document import Policy, verify_policy
from reposeal.translog.checkpoint import NoteVerifier, verify_checkpoint
from reposeal.translog.store import TransparencyLog

ROLE = {
    "approval": "maintainers",
    "removal": "maintainers",
    "build": "builders",
    "override": "admins",
}


@dataclass
class AuditReport:
    entries: int = 0
    signatures: int = 0
    refusals: int = 0
    rotations: int = 0
    key_rotations: int = 0
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations


def _evidence(
    folder: Path, hashes: list[str], policy: Policy, where: str, report: AuditReport
) -> Evidence:
    kinds: dict[str, list[Signed]] = {k: [] for k in ROLE}
    for digest in hashes:
        doc = folder / f"{digest}.json"
        try:
            raw, sigs = read_document(doc)
            if hashlib.sha256(raw).hexdigest() != digest:
                raise ReposealError("content does not match its name")
            kind = from_bytes(raw).kind
            kinds[kind].append(load_signed(raw, sigs, policy.keyrings[ROLE[kind]]))
        except ReposealError as exc:
            report.violations.append(f"{where}: evidence {digest[:16]}… unusable: {exc.message}")
    return Evidence(kinds["approval"], kinds["build"], kinds["removal"], kinds["override"])


def _records(
    home: Path, doc: dict[str, Any], where: str, report: AuditReport
) -> dict[str, PackageRecord] | None:
    """The records an entry names (hash-checked), or None after noting the violation."""
    try:
        return load_records(lambda d: (home / "records" / f"{d}.json").read_bytes(), doc["records"])
    except (OSError, ValueError, KeyError) as exc:
        report.violations.append(f"{where}: its package records are unusable: {exc}")
        return None


def _policy(home: Path, digest: str, previous: Policy | None) -> Policy:
    """The policy a log entry names, from ``policies/`` (or, for a home made before
    policies were kept by hash, ``policy.json``), verified as a rotation of ``previous``."""
    for doc in (home / "policies" / f"{digest}.json", home / "policy.json"):
        if doc.exists():
            raw, sigs = read_document(doc)
            if hashlib.sha256(raw).hexdigest() == digest:
                return verify_policy(raw, sigs, previous)
    raise ReposealError(f"policy {digest[:16]}… named by the log is missing", path=home)


def audit(home: Path) -> AuditReport:
    """Audit an enclave home or a published copy of its log, evidence and policies."""
    report = AuditReport()
    with TransparencyLog(home / "log.sqlite") as log:
        log.verify(full=True)
        entries = log.entries(0, log.size)
        latest = log.latest_checkpoint()
    genesis = json.loads(entries[0])
    policy = _policy(home, genesis["policy_sha256"], None)
    verifier = NoteVerifier.decode(genesis["note_verifier"])
    if latest is not None:
        origin = latest[2].decode().split("\n", 1)[0]
        verify_checkpoint(latest[2], verifier, origin)
    repo_key = None
    state = SigningState()
    current: dict[tuple[str, str], dict[str, PackageRecord]] = {}
    for index, raw in enumerate(entries[1:], 1):
        report.entries += 1
        try:
            doc = read_entry(raw, lambda d: (home / "records" / f"{d}.json").read_bytes())
        except (OSError, ValueError) as exc:
            report.violations.append(f"entry {index}: its spilled fields are unusable: {exc}")
            continue
        if doc.get("type") == "refusal":
            report.refusals += 1
            continue
        if doc.get("type") == "policy":
            try:
                policy = _policy(home, doc["policy_sha256"], policy)
                report.rotations += 1
            except ReposealError as exc:
                report.violations.append(f"entry {index}: a policy rotation that fails: {exc}")
            continue
        if doc.get("type") == "signer":  # the repository key switched: the policy allowed it?
            report.key_rotations += 1
            if not policy.repository_keys or not policy.may_sign(str(doc.get("signer"))):
                report.violations.append(
                    f"entry {index}: switched to key {doc.get('signer')}, which policy "
                    f"v{policy.version} does not name as a current or next repository key"
                )
            continue
        if doc.get("type") in ("packages", "db") and doc.get("policy_version") != policy.version:
            report.violations.append(
                f"entry {index} (job {doc.get('job')}): signed under policy "
                f"v{doc.get('policy_version')}, but v{policy.version} was in force"
            )
            continue
        if doc.get("type") == "packages":
            report.signatures += 1
            where = f"entry {index} (packages for {doc['repo']}, job {doc.get('job')})"
            records = _records(home, doc, where, report)
            if records is None:
                continue
            evidence = _evidence(home / "evidence", doc["evidence"], policy, where, report)
            verdict = decide_packages(state, doc["repo"], records, evidence, policy)
            if not verdict.accepted:
                report.violations.append(
                    f"{where}: the policy would have refused it: " + "; ".join(verdict.reasons)
                )
            state = apply_packages(state, doc["repo"], records)
            continue
        if doc.get("type") == "refresh":
            report.signatures += 1
            if state.last_db.get((doc["repo"], doc["arch"])) != doc["db_sha256"]:
                report.violations.append(
                    f"entry {index}: refreshed a database that was not "
                    f"the latest for {doc['repo']}/{doc['arch']}"
                )
            continue
        if doc.get("type") != "db":
            continue
        report.signatures += 1
        where = f"entry {index} ({doc['repo']}/{doc['arch']}, job {doc.get('job')})"
        records = _records(home, doc, where, report)
        if records is None:
            continue
        key = (doc["repo"], doc["arch"])
        request = Request(
            doc["repo"], doc["arch"], doc["parent"], doc["db_sha256"], current.get(key, {}), records
        )
        evidence = _evidence(home / "evidence", doc["evidence"], policy, where, report)
        decision = decide(state, request, evidence, policy)
        if not decision.accepted:
            report.violations.append(
                f"{where}: the policy would have refused it: " + "; ".join(decision.reasons)
            )
        signed_db = home / "dbs" / doc["db_sha256"]
        if signed_db.exists():
            if repo_key is None:
                repo_key = (
                    Keyring.from_bytes((home / "repo-key.pgp").read_bytes())
                    if (home / "repo-key.pgp").exists()
                    else None
                )
            if repo_key is not None:
                try:
                    verify_as_made(
                        signed_db.read_bytes(), base64.b64decode(doc["signature"]), repo_key
                    )
                except ReposealError as exc:
                    report.violations.append(f"{where}: signature does not verify: {exc.message}")
        state = apply(state, request, Decision(used_overrides=list(doc["used_overrides"])))
        current[key] = records
    return report
