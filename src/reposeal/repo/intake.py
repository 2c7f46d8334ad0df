"""What the repo machine receives: built packages with their build statements (from
builders) and approvals and removal requests (from the source machine). Each is checked on
arrival and refused with a reason, and nothing of a refused upload is kept.

Kept in SQLite (``intake.sqlite``) beside the bridge's blob folder, where accepted package
files live by sha256 so signing jobs reference them without a copy. ``readiness`` says, per
approved source, what is still missing before it can be staged: it runs the enclave's own
``decide_packages`` on the evidence at hand, so "ready" here means the enclave would agree
(given what it signed before).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reposeal.alpm.buildinfo import pkgbuild_sha256
from reposeal.alpm.limits import MAX_PKGBUILD_TEXT, MAX_SIGNATURES, MAX_STATEMENT
from reposeal.alpm.package import read_package
from reposeal.errors import InputError, ReposealError
from reposeal.evidence.quorum import Signed, checked_statement, load_signed, one_per_signer
from reposeal.evidence.statements import (
    ROLE_OF,
    Approval,
    Build,
    Removal,
    StatementError,
    Withdrawal,
    from_bytes,
    of_kind,
)
from reposeal.fsio import atomic_write
from reposeal.openpgp.verify import Keyring
from reposeal.policy.decide import Evidence, PackageRecord, SigningState, decide_packages
from reposeal.policy.document import Policy
from reposeal.sqldb import open_db, transaction


class UploadRefusedError(InputError):
    """An upload does not hold up (parse, signature, hash); nothing of it was kept."""


@dataclass(frozen=True)
class Waiting:
    """An approved source and what it still lacks (empty ``missing``: ready to stage)."""

    repo: str
    pkgbase: str
    commit: str
    packages: dict[str, PackageRecord]
    missing: list[str]

    def to_json(self) -> dict[str, Any]:
        return {
            "repo": self.repo,
            "pkgbase": self.pkgbase,
            "commit": self.commit,
            "packages": sorted(r.filename for r in self.packages.values()),
            "missing": self.missing,
        }


def _signed(
    raw: bytes, sigs: bytes, policy: Policy, role: str, kinds: tuple[type, ...], what: str
) -> Signed:
    """An uploaded statement of one of ``kinds``, signed by a key of the policy's ``role``;
    refused (nothing kept) otherwise."""
    try:
        return checked_statement(
            raw,
            sigs,
            policy.keyrings[role],
            kinds,
            what,
            max_statement=MAX_STATEMENT,
            max_signatures=MAX_SIGNATURES,
            unsigned=f"{what}: no valid signature by a key of the policy's {role} "
            f"(policy v{policy.version})",
        )
    except StatementError as exc:
        raise UploadRefusedError(exc.message) from None


class Intake:
    """The intake store. One writer at a time (SQLite); readers see committed uploads."""

    def __init__(self, folder: Path, blobs: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        blobs.mkdir(parents=True, exist_ok=True)
        self.blobs = blobs
        self.db = open_db(
            folder / "intake.sqlite",
            """
            CREATE TABLE IF NOT EXISTS package (
                sha256 TEXT PRIMARY KEY, filename TEXT NOT NULL, name TEXT NOT NULL,
                version TEXT NOT NULL, arch TEXT NOT NULL, pkgbase TEXT NOT NULL,
                pkgbuild_sha256 TEXT, received REAL NOT NULL);
            CREATE TABLE IF NOT EXISTS statement (
                sha256 TEXT PRIMARY KEY, kind TEXT NOT NULL, pkgbase TEXT NOT NULL,
                commit_id TEXT NOT NULL, raw BLOB NOT NULL, sigs BLOB NOT NULL,
                received REAL NOT NULL);
            CREATE INDEX IF NOT EXISTS statement_base ON statement (pkgbase, commit_id);
            """,
        )

    def _keep_statement(
        self,
        db: sqlite3.Connection,
        raw: bytes,
        sigs: bytes,
        kind: str,
        pkgbase: str,
        commit: str,
        keyring: Keyring,
    ) -> None:
        """Store a statement with one valid signature per key of its role: signatures for
        one already kept are merged by signer, so nobody can grow the file until the
        others' signatures no longer fit, nor count twice."""
        digest = hashlib.sha256(raw).hexdigest()
        row = db.execute("SELECT sigs FROM statement WHERE sha256=?", (digest,)).fetchone()
        held = bytes(row[0]) if row is not None else b""
        merged = one_per_signer(raw, held + sigs, keyring)
        if row is None:
            db.execute(
                "INSERT INTO statement VALUES (?, ?, ?, ?, ?, ?, ?)",
                (digest, kind, pkgbase, commit, raw, merged, time.time()),
            )
        elif merged != held:
            db.execute("UPDATE statement SET sigs=? WHERE sha256=?", (merged, digest))

    # --- builders -----------------------------------------------------------------------

    def check_build(self, policy: Policy, statement: bytes, signatures: bytes) -> Build:
        """The build statement of an upload, if it parses and a builder of the policy signed
        it: checked before the package itself is received."""
        signed = _signed(statement, signatures, policy, "builders", (Build,), "build statement")
        return of_kind(signed.statement, Build)

    def add_build(
        self, policy: Policy, statement: bytes, signatures: bytes, package: Path
    ) -> dict[str, Any]:
        """A built package and its signed build statement. ``package`` is the received file,
        private to the caller, beside the blobs: it is read strictly, held against the
        statement, and on success moved (not copied) to become the kept blob; on refusal
        it is left for the caller to delete."""
        build = self.check_build(policy, statement, signatures)
        try:
            with open(package, "rb") as f:
                pkg = read_package(Path(build.filename), opened=f)
        except ReposealError as exc:
            raise UploadRefusedError(f"{build.filename}: {exc.message}") from None
        if pkg.facts.sha256 != build.sha256:
            raise UploadRefusedError(
                f"the package's sha256 is {pkg.facts.sha256[:16]}…, the build statement "
                f"attests {build.sha256[:16]}…"
            )
        info = pkg.facts.info
        if (info.base or info.name) != build.pkgbase:
            raise UploadRefusedError(
                f"{build.filename} belongs to pkgbase {info.base or info.name}, the "
                f"statement says {build.pkgbase}"
            )
        record = (
            build.sha256,
            build.filename,
            info.name,
            info.version,
            info.arch,
            build.pkgbase,
            pkgbuild_sha256(pkg.buildinfo),
            time.time(),
        )
        with transaction(self.db) as db:
            db.execute("INSERT OR IGNORE INTO package VALUES (?, ?, ?, ?, ?, ?, ?, ?)", record)
            self._keep_statement(
                db, statement, signatures, "build", build.pkgbase, build.commit,
                policy.keyrings["builders"],
            )  # fmt: skip
            os.replace(package, self.blobs / build.sha256)
        return {"package": build.filename, "sha256": build.sha256, "pkgbase": build.pkgbase}

    # --- the source machine -------------------------------------------------------------

    def add_statement(
        self, policy: Policy, statement: bytes, signatures: bytes, pkgbuild: bytes | None = None
    ) -> dict[str, Any]:
        """An approval, a removal request or a withdrawal, signed by maintainers; with an
        approval, the text of the PKGBUILD it approves (kept only if it is that one: the
        enclave publishes it beside the log)."""
        signed = _signed(
            statement,
            signatures,
            policy,
            "maintainers",
            (Approval, Removal, Withdrawal),
            "statement of approval, removal or withdrawal",
        )
        stmt = signed.statement
        if isinstance(stmt, (Approval, Withdrawal)):
            base, commit = stmt.pkgbase, stmt.commit
        else:
            base, commit = ",".join(of_kind(stmt, Removal).pkgnames), ""
        if pkgbuild is not None:
            self._keep_pkgbuild(stmt, pkgbuild)
        with transaction(self.db) as db:
            self._keep_statement(
                db, statement, signatures, stmt.kind, base, commit, policy.keyrings["maintainers"]
            )
        return {"kind": stmt.kind, "signers": sorted(signed.signers)}

    def _keep_pkgbuild(self, stmt: object, text: bytes) -> None:
        """The approved PKGBUILD's text, as a blob named by its sha256 (which the approval
        signs); refused if it is another text, or too large to publish."""
        if not isinstance(stmt, Approval):
            raise UploadRefusedError("only an approval comes with a PKGBUILD text")
        if len(text) > MAX_PKGBUILD_TEXT:
            raise UploadRefusedError(
                f"the PKGBUILD text is larger than {MAX_PKGBUILD_TEXT} bytes; send the "
                "approval without it"
            )
        if hashlib.sha256(text).hexdigest() != stmt.pkgbuild_sha256:
            raise UploadRefusedError("the PKGBUILD text is not the one the approval names")
        if not (self.blobs / stmt.pkgbuild_sha256).exists():
            atomic_write(self.blobs / stmt.pkgbuild_sha256, text)

    def pkgbuild_text(self, digest: str) -> bool:
        """Whether the text of the PKGBUILD with this sha256 is kept (as a blob)."""
        return (self.blobs / digest).is_file()

    # --- what is ready ------------------------------------------------------------------

    def readiness(self, policy: Policy, state: SigningState | None = None) -> list[Waiting]:
        """Every approved source, with what it lacks (the enclave's own rules decide)."""
        out: list[Waiting] = []
        approvals = self.db.execute(
            "SELECT raw, sigs FROM statement WHERE kind='approval' ORDER BY received"
        ).fetchall()
        seen: set[tuple[str, str, str]] = set()
        for raw, _ in approvals:
            a = of_kind(from_bytes(bytes(raw)), Approval)
            key = (a.repo, a.pkgbase, a.commit)
            if key in seen:
                continue
            seen.add(key)
            evidence = self._evidence(policy, a.pkgbase, a.commit)
            packages = self._candidates(a.pkgbase, a.commit, evidence)
            missing: list[str] = []
            withdrawn = self.withdrawn(policy, a.repo, a.pkgbase, a.commit)
            if withdrawn:
                missing.append(f"withdrawn by {', '.join(withdrawn)}: it will not be published")
            elif not packages:
                missing.append(f"no build of {a.pkgbase}@{a.commit[:12]} has arrived")
            else:
                verdict = decide_packages(
                    state or SigningState(), a.repo, packages, evidence, policy
                )
                missing = verdict.reasons
            out.append(Waiting(a.repo, a.pkgbase, a.commit, packages, missing))
        return out

    def removals(self, policy: Policy) -> list[tuple[Removal, str, list[str]]]:
        """Every removal request: (statement, its sha256, what it lacks)."""
        out = []
        rows = self.db.execute(
            "SELECT sha256, raw, sigs FROM statement WHERE kind='removal' ORDER BY received"
        ).fetchall()
        for digest, raw, sigs in rows:
            stmt = of_kind(from_bytes(bytes(raw)), Removal)
            signed = load_signed(bytes(raw), bytes(sigs), policy.keyrings["maintainers"])
            have = len(signed.signers)
            missing = (
                []
                if have >= policy.approvals
                else [
                    f"removal of {', '.join(stmt.pkgnames)} from {stmt.repo} has {have} "
                    f"maintainer approvals, needs {policy.approvals}"
                ]
            )
            out.append((stmt, str(digest), missing))
        return out

    def _evidence(self, policy: Policy, pkgbase: str, commit: str) -> Evidence:
        kinds: dict[str, list[Signed]] = {"approval": [], "build": []}
        rows = self.db.execute(
            "SELECT kind, raw, sigs FROM statement WHERE pkgbase=? AND commit_id=?",
            (pkgbase, commit),
        ).fetchall()
        for kind, raw, sigs in rows:
            if kind in kinds:  # a withdrawal is about the source, not evidence for it
                keyring = policy.keyrings[ROLE_OF[kind]]
                kinds[kind].append(load_signed(bytes(raw), bytes(sigs), keyring))
        return Evidence(kinds["approval"], kinds["build"])

    def withdrawn(self, policy: Policy, repo: str, pkgbase: str, commit: str) -> list[str]:
        """The maintainers who withdrew a source for ``repo`` (empty: it stands)."""
        rows = self.db.execute(
            "SELECT raw, sigs FROM statement WHERE kind='withdrawal' AND pkgbase=? AND commit_id=?",
            (pkgbase, commit),
        ).fetchall()
        who: set[str] = set()
        for raw, sigs in rows:
            signed = load_signed(bytes(raw), bytes(sigs), policy.keyrings["maintainers"])
            if isinstance(signed.statement, Withdrawal) and signed.statement.repo == repo:
                who |= signed.signers
        return sorted(who)

    def _candidates(
        self, pkgbase: str, commit: str, evidence: Evidence
    ) -> dict[str, PackageRecord]:
        """The package files built from ``pkgbase@commit``: per package name, the file the
        most builders attested (a tie: the first to arrive)."""
        attested: dict[str, set[str]] = {}
        for s in evidence.builds:
            b = s.statement
            if isinstance(b, Build) and b.pkgbase == pkgbase and b.commit == commit:
                attested.setdefault(b.sha256, set()).update(s.signers)
        best: dict[str, tuple[int, PackageRecord]] = {}
        rows = self.db.execute(
            "SELECT sha256, filename, name, version, arch, pkgbase, pkgbuild_sha256 "
            "FROM package WHERE pkgbase=? ORDER BY received",
            (pkgbase,),
        ).fetchall()
        for sha, filename, name, version, arch, base, pkgbuild in rows:
            if sha not in attested:
                continue
            rec = PackageRecord(name, version, arch, sha, filename, base, pkgbuild)
            if name not in best or len(attested[sha]) > best[name][0]:
                best[name] = (len(attested[sha]), rec)
        return {n: r for n, (_, r) in best.items()}

    def package_path(self, sha256: str) -> Path:
        return self.blobs / sha256

    def status(self, policy: Policy) -> dict[str, Any]:
        waiting = self.readiness(policy)
        kinds = self.db.execute("SELECT kind, COUNT(*) FROM statement GROUP BY kind")
        removals = [
            {"repo": r.repo, "remove": list(r.pkgnames), "statement": d, "missing": m}
            for r, d, m in self.removals(policy)
        ]
        return {
            "ready": [w.to_json() for w in waiting if not w.missing]
            + [r for r in removals if not r["missing"]],
            "waiting": [w.to_json() for w in waiting if w.missing]
            + [r for r in removals if r["missing"]],
            "packages": self.db.execute("SELECT COUNT(*) FROM package").fetchone()[0],
            "statements": {str(k): int(n) for k, n in kinds.fetchall()},
        }
