"""`enclave audit`: replay a log and its evidence through ``decide``; anyone can run it.

Every signature in the log must be one the policy allowed given everything signed before it.
Needs no key: the log, the evidence it names (by sha256), the policy, and optionally the
signed databases to check the signatures themselves.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reposeal.enclave.records import load_records, load_records_and_entries, read_entry
from reposeal.enclave.worker_io import EVIDENCE_KINDS
from reposeal.errors import ReposealError
from reposeal.evidence.files import read_document
from reposeal.evidence.quorum import Signed, load_signed
from reposeal.evidence.statements import ROLE_OF, from_bytes
from reposeal.openpgp.verify import Keyring, verify_as_made
from reposeal.policy.decide import (
    Addition,
    Evidence,
    Transition,
    decide,
    decide_adoption,
    decide_packages,
)
from reposeal.policy.document import Policy, verify_policy
from reposeal.policy.entries import LogEntry, apply, parse
from reposeal.policy.state import PackageRecord, SigningState
from reposeal.protocol.logfiles import named_digest
from reposeal.translog.checkpoint import NoteVerifier, verify_checkpoint
from reposeal.translog.store import TransparencyLog


@dataclass
class AuditReport:
    entries: int = 0
    signatures: int = 0
    refusals: int = 0
    rotations: int = 0
    key_rotations: int = 0
    violations: list[str] = field(default_factory=list)
    # who adopted what: {entry, repo, arch, packages, admins (fingerprints), keyring_sha256}
    adoptions: list[dict[str, Any]] = field(default_factory=list)
    # what each signed database added and on whose word: {entry, repo, arch, packages:
    # [{name, version, sha256, approved_by, built_by, moved_from}], removed, adopted_by}
    provenance: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations


def _evidence(
    home: Path, entry: LogEntry, policy: Policy, where: str, report: AuditReport
) -> Evidence:
    """The statements an entry names, each with the very signature files it names."""
    from reposeal.alpm.limits import MAX_STATEMENT_BYTES
    from reposeal.alpm.safeio import read_limited
    from reposeal.enclave.records import evidence_files

    kinds: dict[str, list[Signed]] = {k: [] for k in EVIDENCE_KINDS}
    for statement, signatures in evidence_files(entry):
        try:
            raw = read_limited(home / statement, MAX_STATEMENT_BYTES, "a statement")
            _check_named(raw, statement)
            kind = from_bytes(raw).kind
            for sigs in [_signature_file(home, n) for n in signatures] or [b""]:
                if kind in kinds:
                    kinds[kind].append(load_signed(raw, sigs, policy.keyrings[ROLE_OF[kind]]))
        except ReposealError as exc:
            digest = statement.rsplit("/", 1)[1]
            report.violations.append(f"{where}: evidence {digest[:16]}… unusable: {exc.message}")
    return Evidence(
        kinds["approval"], kinds["build"], kinds["removal"], kinds["override"], kinds["adoption"]
    )


def _signature_file(home: Path, name: str) -> bytes:
    """A signature file an entry names (by its hash, or for older entries beside its
    statement)."""
    from reposeal.alpm.limits import MAX_SIG_FILE_BYTES
    from reposeal.alpm.safeio import read_limited

    sigs = read_limited(home / name, MAX_SIG_FILE_BYTES, "a signature file")
    _check_named(sigs, name)
    return sigs


def _check_named(data: bytes, name: str) -> None:
    """A file an entry names holds the bytes its name says (``protocol.logfiles``)."""
    digest = named_digest(name)
    if digest is not None and hashlib.sha256(data).hexdigest() != digest:
        raise ReposealError(f"{name}: content does not match its name")


def _records(
    home: Path, entry: LogEntry, where: str, report: AuditReport
) -> dict[str, PackageRecord] | None:
    """The records an entry names (hash-checked), or None after noting the violation."""
    try:
        return load_records(
            lambda d: (home / "records" / f"{d}.json").read_bytes(), str(entry.records)
        )
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


@dataclass
class _Databases:
    """What audit re-reads of the signed databases: the entries each chunk it read held
    (by the chunk's sha256), and what each repository/architecture must list, by name:
    (version, sha256 of its desc, sha256 of its files), as the log's records say."""

    chunks: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)
    expected: dict[tuple[str, str], dict[str, tuple[str, str, str]]] = field(default_factory=dict)

    def follow(
        self, key: tuple[str, str], adds: dict[str, tuple[str, str, str]], removes: list[str]
    ) -> dict[str, tuple[str, str, str]]:
        held = dict(self.expected.get(key, {}))
        for name in removes:
            held.pop(name, None)
        held.update(adds)
        self.expected[key] = held
        return held

    def listed(self, home: Path, entry: LogEntry) -> dict[str, tuple[str, str, str]]:
        """Every entry of the signed databases, read from their bytes (a chunk read once
        is known by its hash after that)."""
        from reposeal.alpm import chunked
        from reposeal.alpm.compression import SUFFIX_TO_KIND

        kind = SUFFIX_TO_KIND[str(entry.compression)]
        parts = {"db": _db(home, str(entry.db_sha256)), "files": _db(home, str(entry.files_sha256))}
        index = json.loads(_db(home, str(entry.index_sha256)))
        chunks = chunked.chunks_from_index(index, kind, parts)
        if chunks is None:
            raise ReposealError("its chunk index does not describe the signed databases")
        out: dict[str, tuple[str, str, str]] = {}
        for c in chunks:
            digest = hashlib.sha256(c.db + c.files).hexdigest()
            if digest not in self.chunks:
                where = {"db": "signed database", "files": "signed files database"}
                entries = chunked.read_chunks([c], kind, where)
                self.chunks[digest] = [
                    (
                        n,
                        e.version,
                        hashlib.sha256(e.desc).hexdigest()
                        + ":"
                        + hashlib.sha256(e.files or b"").hexdigest(),
                    )
                    for n, e in entries.items()
                ]
            for name, version, hashes in self.chunks[digest]:
                if name in out:
                    raise ReposealError(f"{name} is listed twice")
                desc_sha, files_sha = hashes.split(":")
                out[name] = (version, desc_sha, files_sha)
        return out


def _db(home: Path, digest: str) -> bytes:
    data = (home / "dbs" / digest).read_bytes()
    if hashlib.sha256(data).hexdigest() != digest:
        raise ReposealError(f"dbs/{digest[:16]}… does not match its hash")
    return data


def _transition(entry: LogEntry, records: dict[str, PackageRecord]) -> Transition:
    adds = {n: Addition(r, entry.moved_from.get(n)) for n, r in records.items()}
    return Transition(str(entry.repo), str(entry.arch), entry.parent, adds, list(entry.removes))


def _provenance(
    index: int, entry: LogEntry, records: dict[str, PackageRecord], evidence: Evidence
) -> dict[str, Any]:
    """Who vouched for what one signed database added: the maintainers whose approvals of
    its PKGBUILD and the builders whose attestations of its file the enclave took."""
    from reposeal.evidence.statements import Approval, Build

    approved: dict[tuple[str, str], set[str]] = {}
    commits: dict[tuple[str, str], set[str]] = {}
    for s in evidence.approvals:
        if isinstance(s.statement, Approval):
            key = (s.statement.pkgbase, s.statement.pkgbuild_sha256)
            approved.setdefault(key, set()).update(s.signers)
            commits.setdefault(key, set()).add(s.statement.commit)
    built: dict[str, set[str]] = {}
    for s in evidence.builds:
        if isinstance(s.statement, Build):
            built.setdefault(s.statement.sha256, set()).update(s.signers)
    moved = entry.moved_from
    return {
        "entry": index,
        "repo": entry.repo,
        "arch": entry.arch,
        "packages": [
            {
                "name": r.name,
                "version": r.version,
                "sha256": r.sha256,
                "approved_by": sorted(approved.get((r.pkgbase, r.pkgbuild_sha256 or ""), ())),
                "pkgbase": r.pkgbase,
                "pkgbuild_sha256": r.pkgbuild_sha256,
                "commits": sorted(commits.get((r.pkgbase, r.pkgbuild_sha256 or ""), ())),
                "built_by": sorted(built.get(r.sha256, ())),
                "moved_from": moved.get(n),
            }
            for n, r in sorted(records.items())
        ],
        "removed": list(entry.removes),
        "adopted_by": sorted({f for s in evidence.adoptions for f in s.signers}),
    }


def _texts_kept(home: Path, entry: LogEntry, records: dict[str, PackageRecord]) -> list[str]:
    """The PKGBUILD texts an entry names are those of packages it added, each the bytes of
    its hash where the copy holds it (the texts themselves may be missing from a mirror)."""
    added = {r.pkgbuild_sha256 for r in records.values()}
    out = []
    for digest in entry.pkgbuilds:
        if digest not in added:
            out.append(
                f"kept the text of PKGBUILD {str(digest)[:16]}, which no package it adds has"
            )
            continue
        path = home / "pkgbuilds" / str(digest)
        if path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            out.append(f"the text of PKGBUILD {digest[:16]} does not match its hash")
    return out


def _package_file(mirror: Path, repo: str, arch: str, filename: str) -> Path | None:
    """Where a mirror keeps a package file: its repository's folder, or the archive."""
    name = filename.rsplit("-", 3)[0]
    for path in (
        mirror / repo / "os" / arch / filename,
        mirror / "archive" / "packages" / name[:1] / name / filename,
    ):
        if path.is_file():
            return path
    return None


def _rederive(
    mirror: Path,
    logged: LogEntry,
    records: dict[str, PackageRecord],
    hashes: dict[str, str],
    files: dict[str, str],
    signatures: Mapping[str, str],
) -> list[str]:
    """Every added package re-read from the mirror: its record and the entries written for
    it must be what its own bytes give (``--packages``)."""
    from dataclasses import replace

    from reposeal.alpm.package import read_package
    from reposeal.alpm.syncdb import Entry
    from reposeal.enclave.transition import record_of

    out = []
    for name, rec in sorted(records.items()):
        path = _package_file(mirror, str(logged.repo), str(logged.arch), rec.filename)
        if path is None:
            out.append(f"{rec.filename} is on no mirror folder: it cannot be re-read")
            continue
        try:
            pkg = read_package(path)
        except ReposealError as exc:
            out.append(f"{rec.filename} does not read: {exc.message}")
            continue
        if record_of(pkg, rec.filename) != rec:
            out.append(f"{rec.filename}: the log's record is not what the file's bytes give")
            continue
        facts = replace(pkg.facts, pgpsig=signatures.get(rec.sha256, ""))
        entry = Entry.from_package(facts, pkg.files)
        if hashlib.sha256(entry.desc).hexdigest() != hashes.get(name):
            out.append(f"{name}: the desc signed for it is not the one its package gives")
        if hashlib.sha256(entry.files or b"").hexdigest() != files.get(name):
            out.append(f"{name}: the file list signed for it is not its package's")
    return out


def audit(home: Path, packages: Path | None = None) -> AuditReport:
    """Audit an enclave home or a published copy of its log, evidence and policies; with
    ``packages`` (a mirror), re-read every package file a database added and re-derive its
    record and entries."""
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
    databases = _Databases()

    def loader(digest: str) -> bytes:
        return (home / "records" / f"{digest}.json").read_bytes()

    for index, raw in enumerate(entries[1:], 1):
        report.entries += 1
        try:
            e = LogEntry.read(read_entry(raw, loader))  # the version, each field's type
        except (OSError, ValueError, ReposealError) as exc:
            report.violations.append(f"entry {index}: unreadable: {exc}")
            continue
        if e.type == "refusal":
            report.refusals += 1
            continue
        if e.type == "policy":
            try:
                policy = _policy(home, str(e.policy_sha256), policy)
                report.rotations += 1
            except ReposealError as exc:
                report.violations.append(f"entry {index}: a policy rotation that fails: {exc}")
            continue
        if e.type == "signer":  # the repository key switched: the policy allowed it?
            report.key_rotations += 1
            if not policy.repository_keys or not policy.may_sign(str(e.signer)):
                report.violations.append(
                    f"entry {index}: switched to key {e.signer}, which policy "
                    f"v{policy.version} does not name as a current or next repository key"
                )
            continue
        if e.type in ("packages", "db") and e.policy_version != policy.version:
            report.violations.append(
                f"entry {index} (job {e.job}): signed under policy "
                f"v{e.policy_version}, but v{policy.version} was in force"
            )
            continue
        if e.type == "packages":
            report.signatures += 1
            where = f"entry {index} (packages for {e.repo}, job {e.job})"
            records = _records(home, e, where, report)
            if records is None:
                continue
            evidence = _evidence(home, e, policy, where, report)
            verdict = decide_packages(state, str(e.repo), records, evidence, policy)
            if not verdict.accepted:
                report.violations.append(
                    f"{where}: the policy would have refused it: " + "; ".join(verdict.reasons)
                )
            change = parse(e, _given(records))
            if change is not None:
                state = apply(state, change)
            continue
        if e.type == "refresh":
            report.signatures += 1
            if state.last_db.get((str(e.repo), str(e.arch))) != e.db_sha256:
                report.violations.append(
                    f"entry {index}: refreshed a database that was not "
                    f"the latest for {e.repo}/{e.arch}"
                )
            continue
        if e.type != "db":
            continue
        report.signatures += 1
        where = f"entry {index} ({e.repo}/{e.arch}, job {e.job})"
        try:
            records, hashes, files = load_records_and_entries(loader, str(e.records))
        except (OSError, ValueError, KeyError) as exc:
            report.violations.append(f"{where}: its package records are unusable: {exc}")
            continue
        evidence = _evidence(home, e, policy, where, report)
        adopted = e.package_signatures
        if e.adoption:  # the packager signatures were checked when it was signed
            named = [s.statement for s in evidence.adoptions]
            keyring = getattr(named[0], "keyring_sha256", None) if len(named) == 1 else None
            report.adoptions.append({
                "entry": index, "repo": e.repo, "arch": e.arch,
                "packages": sorted(f"{r.name} {r.version}" for r in records.values()),
                "admins": sorted({f for s in evidence.adoptions for f in s.signers}),
                "keyring_sha256": keyring,
            })  # fmt: skip
            decision = decide_adoption(
                state, _transition(e, records), evidence, policy, frozenset(adopted), keyring
            )
        else:
            decision = decide(state, _transition(e, records), evidence, policy)
        if not decision.accepted:
            report.violations.append(
                f"{where}: the policy would have refused it: " + "; ".join(decision.reasons)
            )
        key = (str(e.repo), str(e.arch))
        expected = databases.follow(
            key,
            {n: (r.version, hashes.get(n, ""), files.get(n, "")) for n, r in records.items()},
            list(e.removes),
        )
        if (home / "dbs" / str(e.db_sha256)).exists():
            try:
                listed = databases.listed(home, e)
            except (OSError, ValueError, KeyError, ReposealError) as exc:
                report.violations.append(f"{where}: the signed databases do not read: {exc}")
            else:
                report.violations += [
                    f"{where}: the signed database {p}" for p in _compare(listed, expected)
                ]
            if repo_key is None:
                repo_key = (
                    Keyring.from_bytes((home / "repo-key.pgp").read_bytes())
                    if (home / "repo-key.pgp").exists()
                    else None
                )
            if repo_key is not None:
                try:
                    signature = base64.b64decode(str(e.signature))
                    verify_as_made(_db(home, str(e.db_sha256)), signature, repo_key)
                except ReposealError as exc:
                    report.violations.append(f"{where}: signature does not verify: {exc.message}")
                except ValueError:
                    report.violations.append(f"{where}: its signature is not base64")
        report.provenance.append(_provenance(index, e, records, evidence))
        report.violations += [f"{where}: {p}" for p in _texts_kept(home, e, records)]
        if packages is not None:
            found = _rederive(packages, e, records, hashes, files, {**state.signatures, **adopted})
            report.violations += [f"{where}: {p}" for p in found]
        change = parse(e, _given(records))
        if change is not None:
            state = apply(state, change)
    return report


def _given(records: dict[str, PackageRecord]) -> Callable[[str], dict[str, PackageRecord]]:
    """A records loader for an entry whose records are already in hand."""
    return lambda _: records


def _compare(
    listed: dict[str, tuple[str, str, str]], expected: dict[str, tuple[str, str, str]]
) -> list[str]:
    """How the entries of a signed database differ from what the log says it holds."""
    out = [f"lists {n} {listed[n][0]}, which the log never put there" for n in sorted(
        set(listed) - set(expected))]  # fmt: skip
    out += [f"lacks {n}, which the log says it holds" for n in sorted(set(expected) - set(listed))]
    for name in sorted(set(listed) & set(expected)):
        if listed[name][0] != expected[name][0]:
            out.append(f"lists {name} {listed[name][0]}, the log says {expected[name][0]}")
        elif listed[name][1] != expected[name][1]:
            out.append(f"lists {name} with another desc than the enclave wrote for its package")
        elif listed[name][2] != expected[name][2]:
            out.append(f"lists {name} with other files than the enclave wrote for its package")
    return out
