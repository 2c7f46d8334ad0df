"""The sandboxed worker: reads one job's bytes, derives every fact, applies ``decide``.

Runs inside bubblewrap with no network, a read-only view of the job and a private output
folder. It holds no key and signs nothing; its only output is ``decision.json``. Any
malformed input ends as a refusal with a typed reason, never a crash of the enclave.

Job folder: job.json, state.json, policy.json(.sig), new.db, [parent.db], packages/, evidence/.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from reposeal import canonical
from reposeal.alpm.buildinfo import pkgbuild_sha256
from reposeal.alpm.package import read_package
from reposeal.alpm.syncdb import entry_problems, read_entries
from reposeal.enclave.records import (
    load_records,
    record_from_entry,
    record_to_json,
    state_from_json,
)
from reposeal.errors import ReposealError
from reposeal.evidence.files import read_document
from reposeal.evidence.quorum import Signed, load_signed
from reposeal.evidence.statements import from_bytes
from reposeal.policy.decide import Evidence, PackageRecord, Request, decide, decide_packages
from reposeal.policy.document import Policy, verify_policy

ROLE = {
    "approval": "maintainers",
    "removal": "maintainers",
    "build": "builders",
    "override": "admins",
}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _records(db: Path) -> dict[str, PackageRecord]:
    """Every entry checked and turned into a record, each desc parsed once."""
    out: dict[str, PackageRecord] = {}
    problems: list[str] = []
    for name, e in read_entries(db, None).items():
        try:
            f = e.fields()
        except ReposealError as exc:
            problems.append(exc.message)
            continue
        problems += entry_problems(e, f)
        if not problems:
            out[name] = record_from_entry(e, f)
    if problems:
        raise ReposealError("database entries are invalid: " + "; ".join(problems[:5]), path=db)
    return out


def _with_buildinfo(rec: PackageRecord, packages: Path) -> tuple[PackageRecord, str | None]:
    path = packages / rec.filename
    if not path.is_file():
        return rec, f"{rec.name} {rec.version}: package file {rec.filename} was not sent"
    pkg = read_package(path)
    info = pkg.facts.info
    if pkg.facts.sha256 != rec.sha256:
        return rec, f"{rec.name}: the file's sha256 differs from the database's %SHA256SUM%"
    if (info.name, info.version, info.arch) != (rec.name, rec.version, rec.arch):
        return rec, f"{rec.name}: the package's .PKGINFO does not match its database entry"
    base = info.base or info.name
    if base != rec.pkgbase:
        return rec, f"{rec.name}: pkgbase {base} in .PKGINFO, {rec.pkgbase} in the database"
    return PackageRecord(
        rec.name,
        rec.version,
        rec.arch,
        rec.sha256,
        rec.filename,
        rec.pkgbase,
        pkgbuild_sha256(pkg.buildinfo),
    ), None


def _evidence(folder: Path, policy: Policy) -> tuple[Evidence, list[str], list[str]]:
    """Verified evidence, what was ignored and why, and the sha256 of each used statement."""
    kinds: dict[str, list[Signed]] = {k: [] for k in ROLE}
    ignored: list[str] = []
    used: list[str] = []
    for doc in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            raw, sigs = read_document(doc)
            kind = from_bytes(raw).kind
            kinds[kind].append(load_signed(raw, sigs, policy.keyrings[ROLE[kind]]))
            used.append(hashlib.sha256(raw).hexdigest())
        except ReposealError as exc:
            ignored.append(f"{doc.name}: {exc.message}")
    evidence = Evidence(kinds["approval"], kinds["build"], kinds["removal"], kinds["override"])
    return evidence, ignored, used


def _record_of_file(path: Path) -> PackageRecord:
    """A package record from the package file alone (.PKGINFO and .BUILDINFO re-read)."""
    pkg = read_package(path)
    info = pkg.facts.info
    return PackageRecord(
        info.name,
        info.version,
        info.arch,
        pkg.facts.sha256,
        path.name,
        info.base or info.name,
        pkgbuild_sha256(pkg.buildinfo),
    )


def run_packages(job: Path, spec: dict[str, Any], policy: Policy) -> dict[str, Any]:
    """A package-signing job: every file in packages/ is read and checked."""
    state = state_from_json((job / "state.json").read_bytes())
    records: dict[str, PackageRecord] = {}
    reasons: list[str] = []
    for path in sorted((job / "packages").iterdir()):
        if path.name.endswith(".sig"):
            continue
        try:
            rec = _record_of_file(path)
        except ReposealError as exc:
            reasons.append(str(exc))
            continue
        if rec.name in records:
            reasons.append(f"{rec.name}: two files in one job")
        records[rec.name] = rec
    evidence, ignored, used = _evidence(job / "evidence", policy)
    decision = decide_packages(state, spec["repo"], records, evidence, policy)
    reasons += decision.reasons
    return {
        "decision": "refuse" if reasons or not records else "accept",
        "reasons": reasons or ([] if records else ["no package files in the job"]),
        "ignored_evidence": ignored,
        "repo": spec["repo"],
        "policy_version": policy.version,
        "evidence": sorted(used),
        "packages": [record_to_json(r) for r in sorted(records.values(), key=lambda r: r.name)],
    }


def run(job: Path) -> dict[str, Any]:
    spec = json.loads((job / "job.json").read_bytes())
    policy = verify_policy(*read_document(job / "policy.json"))
    if spec.get("kind") == "packages":
        return run_packages(job, spec, policy)
    state = state_from_json((job / "state.json").read_bytes())
    new_db = job / "new.db"
    new = _records(new_db)
    old: dict[str, PackageRecord] = {}
    reasons: list[str] = []
    parent = spec.get("parent")
    if parent is not None and (job / "parent.records.json").exists():
        # the parent's records as the enclave logged them when it signed it (hash-bound)
        old = load_records(
            lambda _: (job / "parent.records.json").read_bytes(), spec["parent_records"]
        )
    elif parent is not None:
        if _sha256(job / "parent.db") != parent:
            raise ReposealError("the parent database sent does not match its hash")
        old = _records(job / "parent.db")
    for name, rec in list(new.items()):
        prev = old.get(name)
        if prev is not None and prev.sha256 == rec.sha256:
            continue
        new[name], problem = _with_buildinfo(rec, job / "packages")
        if problem:
            reasons.append(problem)
    evidence, ignored, used = _evidence(job / "evidence", policy)
    request = Request(spec["repo"], spec["arch"], parent, _sha256(new_db), old, new)
    decision = decide(state, request, evidence, policy)
    reasons += decision.reasons
    return {
        "decision": "refuse" if reasons else "accept",
        "reasons": reasons,
        "ignored_evidence": ignored,
        "used_overrides": decision.used_overrides,
        "db_sha256": request.db_sha256,
        "parent": parent,
        "repo": spec["repo"],
        "arch": spec["arch"],
        "policy_version": policy.version,
        "evidence": sorted(used),
        "packages": [record_to_json(r) for r in sorted(new.values(), key=lambda r: r.name)],
    }


def main() -> None:
    job, out = Path(sys.argv[1]), Path(sys.argv[2])
    try:
        result = run(job)
    except ReposealError as exc:
        result = {"decision": "refuse", "reasons": [str(exc)], "kind": type(exc).__name__}
    except (OSError, ValueError, KeyError) as exc:
        result = {"decision": "refuse", "reasons": [f"malformed job: {exc}"]}
    # the records go in their own canonical file: the loop stores and hashes them as they are
    records = result.pop("packages", [])
    (out / "records.json").write_bytes(canonical.dumps(records))
    (out / "decision.json").write_bytes(canonical.dumps(result))


if __name__ == "__main__":
    main()
