"""The source machine's records (SQLite): proposals (commits seen), approvals (statements
with their signatures, merged), withdrawals, build jobs, and what each builder reported."""

from __future__ import annotations

import functools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from reposeal.evidence.quorum import one_per_signer
from reposeal.openpgp.verify import Keyring
from reposeal.protocol.buildjobs import BuildJob
from reposeal.source.gitrepo import Commit
from reposeal.sqldb import open_db, transaction

F = TypeVar("F", bound=Callable[..., Any])


def _locked(method: F) -> F:
    """One thread at a time on the store's connection (the HTTP handlers' threads and the
    git watcher share it; an interleaved BEGIN would break the other's transaction)."""

    @functools.wraps(method)
    def wrapper(self: SourceStore, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


LEASE = 1800.0  # seconds a builder may hold a job before another take hands it out again


@dataclass(frozen=True)
class Proposal:
    commit: Commit
    pkgbuild_sha256: str
    author: str | None  # maintainer key of the author, when the author is one

    def to_json(self) -> dict[str, Any]:
        c = self.commit
        return {
            "pkgbase": c.pkgbase,
            "commit": c.id,
            "author_email": c.author_email,
            "author": self.author,
            "subject": c.subject,
            "timestamp": c.timestamp,
            "pkgbuild_sha256": self.pkgbuild_sha256,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Proposal:
        """A proposal as this store keeps it (its own rows: written by ``to_json``)."""
        commit = Commit(
            str(doc["pkgbase"]),
            str(doc["commit"]),
            str(doc["author_email"]),
            int(doc["timestamp"]),
            str(doc["subject"]),
        )
        author = doc.get("author")
        return cls(commit, str(doc["pkgbuild_sha256"]), str(author) if author else None)

    @property
    def pkgbase(self) -> str:
        return self.commit.pkgbase


class SourceStore:
    def __init__(self, folder: Path) -> None:
        self._lock = threading.RLock()
        self.db = open_db(
            folder / "source.sqlite",
            """
            CREATE TABLE IF NOT EXISTS proposal (
                pkgbase TEXT NOT NULL, commit_id TEXT NOT NULL, doc TEXT NOT NULL,
                seen REAL NOT NULL, PRIMARY KEY (pkgbase, commit_id));
            CREATE TABLE IF NOT EXISTS approval (
                sha256 TEXT PRIMARY KEY, repo TEXT NOT NULL, pkgbase TEXT NOT NULL,
                commit_id TEXT NOT NULL, raw BLOB NOT NULL, sigs BLOB NOT NULL,
                forwarded BLOB);
            CREATE TABLE IF NOT EXISTS withdrawal (
                sha256 TEXT PRIMARY KEY, repo TEXT NOT NULL, pkgbase TEXT NOT NULL,
                commit_id TEXT NOT NULL, raw BLOB NOT NULL, sigs BLOB NOT NULL,
                forwarded BLOB);
            CREATE TABLE IF NOT EXISTS job (
                id TEXT PRIMARY KEY, repo TEXT NOT NULL, pkgbase TEXT NOT NULL,
                commit_id TEXT NOT NULL, epoch INTEGER NOT NULL, created REAL NOT NULL,
                arch TEXT NOT NULL DEFAULT '');
            CREATE TABLE IF NOT EXISTS taken (
                job TEXT NOT NULL, builder TEXT NOT NULL, at REAL NOT NULL,
                PRIMARY KEY (job, builder));
            CREATE TABLE IF NOT EXISTS report (
                job TEXT NOT NULL, builder TEXT NOT NULL, doc TEXT NOT NULL,
                PRIMARY KEY (job, builder));
            """,
        )
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(job)")}
        if "arch" not in columns:  # a store from before jobs had an architecture
            self.db.execute("ALTER TABLE job ADD COLUMN arch TEXT NOT NULL DEFAULT ''")

    # proposals ---------------------------------------------------------------------------

    @_locked
    def add_proposal(self, p: Proposal) -> bool:
        cur = self.db.execute(
            "INSERT OR IGNORE INTO proposal VALUES (?, ?, ?, ?)",
            (p.commit.pkgbase, p.commit.id, json.dumps(p.to_json()), time.time()),
        )
        return cur.rowcount == 1

    @_locked
    def proposal(self, pkgbase: str, commit: str) -> Proposal | None:
        row = self.db.execute(
            "SELECT doc FROM proposal WHERE pkgbase=? AND commit_id=?", (pkgbase, commit)
        ).fetchone()
        return None if row is None else Proposal.from_json(json.loads(row[0]))

    @_locked
    def proposals(self) -> list[Proposal]:
        rows = self.db.execute("SELECT doc FROM proposal ORDER BY seen").fetchall()
        return [Proposal.from_json(json.loads(r[0])) for r in rows]

    # approvals ---------------------------------------------------------------------------

    @_locked
    def add_approval(
        self,
        digest: str,
        repo: str,
        pkgbase: str,
        commit: str,
        raw: bytes,
        sigs: bytes,
        keyring: Keyring,
    ) -> bytes:
        """Keep a statement with one valid signature per maintainer key, merged with those
        already held (see ``one_per_signer``); return them all."""
        with transaction(self.db) as db:
            row = db.execute("SELECT sigs FROM approval WHERE sha256=?", (digest,)).fetchone()
            merged = one_per_signer(raw, (bytes(row[0]) if row else b"") + sigs, keyring)
            db.execute(
                "INSERT INTO approval (sha256, repo, pkgbase, commit_id, raw, sigs) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (sha256) DO UPDATE SET sigs=excluded.sigs",
                (digest, repo, pkgbase, commit, raw, merged),
            )
        return merged

    @_locked
    def approvals(self, pkgbase: str, commit: str) -> list[tuple[str, bytes, bytes]]:
        """(sha256, statement, signatures) of every approval of a commit."""
        rows = self.db.execute(
            "SELECT sha256, raw, sigs FROM approval WHERE pkgbase=? AND commit_id=?",
            (pkgbase, commit),
        ).fetchall()
        return [(str(d), bytes(r), bytes(s)) for d, r, s in rows]

    @_locked
    def unforwarded(self) -> list[tuple[str, bytes, bytes]]:
        """Approvals of commits with a build job whose signatures the repo machine lacks."""
        rows = self.db.execute(
            "SELECT a.sha256, a.raw, a.sigs FROM approval a JOIN job j ON "
            "j.pkgbase=a.pkgbase AND j.commit_id=a.commit_id AND j.repo=a.repo "
            "WHERE a.forwarded IS NULL OR a.forwarded != a.sigs"
        ).fetchall()
        return [(str(d), bytes(r), bytes(s)) for d, r, s in rows]

    @_locked
    def forwarded(self, digest: str, sigs: bytes) -> None:
        for table in ("approval", "withdrawal"):
            self.db.execute(f"UPDATE {table} SET forwarded=? WHERE sha256=?", (sigs, digest))  # noqa: S608

    # withdrawals -------------------------------------------------------------------------

    @_locked
    def add_withdrawal(
        self, digest: str, repo: str, pkgbase: str, commit: str, raw: bytes, sigs: bytes
    ) -> None:
        """Keep a maintainer's withdrawal: the commit's build job for ``repo`` is handed
        to no builder from now on."""
        self.db.execute(
            "INSERT INTO withdrawal (sha256, repo, pkgbase, commit_id, raw, sigs) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (sha256) DO UPDATE SET sigs=excluded.sigs",
            (digest, repo, pkgbase, commit, raw, sigs),
        )

    @_locked
    def withdrawals(self, pkgbase: str, commit: str) -> list[tuple[str, bytes, bytes]]:
        """(repo, statement, signatures) of every withdrawal of a commit."""
        rows = self.db.execute(
            "SELECT repo, raw, sigs FROM withdrawal WHERE pkgbase=? AND commit_id=?",
            (pkgbase, commit),
        ).fetchall()
        return [(str(r), bytes(w), bytes(s)) for r, w, s in rows]

    @_locked
    def unforwarded_withdrawals(self) -> list[tuple[str, bytes, bytes]]:
        rows = self.db.execute(
            "SELECT sha256, raw, sigs FROM withdrawal WHERE forwarded IS NULL OR forwarded != sigs"
        ).fetchall()
        return [(str(d), bytes(r), bytes(s)) for d, r, s in rows]

    # build jobs --------------------------------------------------------------------------

    @_locked
    def add_job(
        self, repo: str, pkgbase: str, commit: str, epoch: int, arch: str = "", suffix: bool = False
    ) -> str | None:
        """A build job for an approved commit (once per commit, repository and architecture;
        ``suffix``: the architecture is in the id, when the repository has several)."""
        job_id = f"{pkgbase}-{commit[:12]}-{repo}" + (f"-{arch}" if suffix else "")
        cur = self.db.execute(
            "INSERT OR IGNORE INTO job (id, repo, pkgbase, commit_id, epoch, created, arch) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (job_id, repo, pkgbase, commit, epoch, time.time(), arch),
        )
        return job_id if cur.rowcount == 1 else None

    @_locked
    def job(self, job_id: str) -> BuildJob | None:
        row = self.db.execute(
            "SELECT id, repo, pkgbase, commit_id, epoch, arch FROM job WHERE id=?", (job_id,)
        ).fetchone()
        return None if row is None else self._job(row)

    @staticmethod
    def _job(row: tuple[Any, ...]) -> BuildJob:
        job_id, repo, pkgbase, commit, epoch, arch = row
        return BuildJob(str(job_id), str(repo), str(pkgbase), str(commit), int(epoch), str(arch))

    @_locked
    def jobs_of(self, pkgbase: str, commit: str) -> list[BuildJob]:
        rows = self.db.execute(
            "SELECT id, repo, pkgbase, commit_id, epoch, arch FROM job "
            "WHERE pkgbase=? AND commit_id=?",
            (pkgbase, commit),
        ).fetchall()
        return [self._job(r) for r in rows]

    @_locked
    def last_built(self, pkgbase: str, before: float) -> str | None:
        """The commit of the last build job of ``pkgbase`` created before ``before``."""
        row = self.db.execute(
            "SELECT commit_id FROM job WHERE pkgbase=? AND created < ? ORDER BY created DESC",
            (pkgbase, before),
        ).fetchone()
        return None if row is None else str(row[0])

    @_locked
    def seen_at(self, pkgbase: str, commit: str) -> float:
        row = self.db.execute(
            "SELECT seen FROM proposal WHERE pkgbase=? AND commit_id=?", (pkgbase, commit)
        ).fetchone()
        return float(row[0]) if row else time.time()

    @_locked
    def take(self, builder: str, arch: str | None = None) -> BuildJob | None:
        """The oldest job ``builder`` has neither reported nor holds, and no maintainer
        withdrew (every builder of an architecture builds every job of it: that is the
        reproducibility check); ``arch``: the builder's (None: any job)."""
        now = time.time()
        with transaction(self.db) as db:
            row = db.execute(
                "SELECT id, repo, pkgbase, commit_id, epoch, arch FROM job j WHERE NOT EXISTS "
                "(SELECT 1 FROM report r WHERE r.job=j.id AND r.builder=?) AND NOT EXISTS "
                "(SELECT 1 FROM taken t WHERE t.job=j.id AND t.builder=? AND t.at > ?) "
                "AND NOT EXISTS (SELECT 1 FROM withdrawal w WHERE w.repo=j.repo AND "
                "w.pkgbase=j.pkgbase AND w.commit_id=j.commit_id) "
                "AND (? IS NULL OR j.arch IN ('', ?)) "
                "ORDER BY created LIMIT 1",
                (builder, builder, now - LEASE, arch, arch),
            ).fetchone()
            if row is not None:
                db.execute("INSERT OR REPLACE INTO taken VALUES (?, ?, ?)", (row[0], builder, now))
        return None if row is None else self._job(row)

    @_locked
    def release(self, builder: str) -> None:
        """What ``builder`` held when it (re)started comes back at once."""
        self.db.execute("DELETE FROM taken WHERE builder=?", (builder,))

    @_locked
    def add_report(self, job_id: str, builder: str, doc: dict[str, Any]) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO report VALUES (?, ?, ?)", (job_id, builder, json.dumps(doc))
        )

    @_locked
    def reports(self, job_id: str) -> dict[str, dict[str, Any]]:
        rows = self.db.execute("SELECT builder, doc FROM report WHERE job=?", (job_id,))
        return {str(b): json.loads(d) for b, d in rows.fetchall()}
