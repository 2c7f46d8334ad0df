"""The update cycles' records: each cycle of a repository and architecture with its plan
and the step it reached, the sources published or parked after a refusal, and the moves
between layers (SQLite, beside the intake). Read by the status pages; written by the cycle
(``repo.cycle``) only."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reposeal.repo.move import MOVE, Move
from reposeal.repo.plans import CyclePlan
from reposeal.sqldb import open_db, transaction

STEPS = ("sign-packages", "pool", "propose", "witness", "publish", "log", "done")
REMOVAL = "(removal)"  # how a removal request is named among a cycle's sources


@dataclass
class Cycle:
    id: str
    repo: str
    arch: str
    step: str
    plan: CyclePlan
    detail: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "repo": self.repo,
            "arch": self.arch,
            "step": self.step,
            "sources": [list(s) for s in self.plan.sources],
            **self.detail,
        }


class Cycles:
    """The cycles' records (SQLite), beside the intake."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.db = open_db(
            folder / "cycles.sqlite",
            """
            CREATE TABLE IF NOT EXISTS cycle (
                id TEXT PRIMARY KEY, repo TEXT NOT NULL, arch TEXT NOT NULL,
                step TEXT NOT NULL, plan TEXT NOT NULL, detail TEXT NOT NULL,
                created REAL NOT NULL, updated REAL NOT NULL);
            CREATE TABLE IF NOT EXISTS move (
                id TEXT PRIMARY KEY, doc TEXT NOT NULL, created REAL NOT NULL);
            CREATE TABLE IF NOT EXISTS published (
                repo TEXT NOT NULL, arch TEXT NOT NULL, pkgbase TEXT NOT NULL,
                commit_id TEXT NOT NULL, cycle TEXT NOT NULL,
                PRIMARY KEY (repo, arch, pkgbase, commit_id));
            CREATE TABLE IF NOT EXISTS parked (
                repo TEXT NOT NULL, arch TEXT NOT NULL, pkgbase TEXT NOT NULL,
                commit_id TEXT NOT NULL, evidence TEXT NOT NULL, alone INTEGER NOT NULL,
                reasons TEXT NOT NULL, cycle TEXT NOT NULL, at REAL NOT NULL,
                PRIMARY KEY (repo, arch, pkgbase, commit_id));
            """,
        )

    def active(self, repo: str, arch: str) -> Cycle | None:
        row = self.db.execute(
            "SELECT id, repo, arch, step, plan, detail FROM cycle WHERE repo=? AND arch=? "
            "AND step NOT IN ('done', 'failed') ORDER BY created LIMIT 1",
            (repo, arch),
        ).fetchone()
        return None if row is None else self._cycle(row)

    def all(self, limit: int = 50) -> list[Cycle]:
        rows = self.db.execute(
            "SELECT id, repo, arch, step, plan, detail FROM cycle ORDER BY created DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [self._cycle(r) for r in rows]

    @staticmethod
    def _cycle(row: tuple[Any, ...]) -> Cycle:
        plan = CyclePlan.from_json(json.loads(row[4]))
        return Cycle(row[0], row[1], row[2], row[3], plan, json.loads(row[5]))

    def create(self, repo: str, arch: str, plan: CyclePlan) -> Cycle:
        n = self.db.execute("SELECT COUNT(*) FROM cycle").fetchone()[0] + 1
        now = time.time()
        cycle = Cycle(f"{repo}-{arch}-{n:06d}", repo, arch, STEPS[0], plan, {"times": {}})
        cycle.detail["times"][cycle.step] = now
        row = (cycle.id, repo, arch, cycle.step, json.dumps(plan.to_json()),
               json.dumps(cycle.detail))  # fmt: skip
        self.db.execute("INSERT INTO cycle VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (*row, now, now))
        return cycle

    def save(self, cycle: Cycle) -> None:
        """Record a finished step (the next one starts only after this)."""
        cycle.detail.setdefault("times", {})[cycle.step] = time.time()  # when each began
        with transaction(self.db) as db:
            db.execute(
                "UPDATE cycle SET step=?, detail=?, updated=? WHERE id=?",
                (cycle.step, json.dumps(cycle.detail), time.time(), cycle.id),
            )
            if cycle.step == "done":
                for base, commit in cycle.plan.sources:
                    db.execute(
                        "INSERT OR IGNORE INTO published VALUES (?, ?, ?, ?, ?)",
                        (cycle.repo, cycle.arch, base, commit, cycle.id),
                    )
                    db.execute(  # retried alone after a batch refusal, and published
                        "DELETE FROM parked WHERE repo=? AND arch=? AND pkgbase=? AND commit_id=?",
                        (cycle.repo, cycle.arch, base, commit),
                    )

    def park(self, cycle: Cycle, evidence: dict[tuple[str, str], list[str]]) -> None:
        """A refused cycle's sources wait until their evidence changes: a source refused on
        its own is parked; sources refused together are each tried alone once first (one
        bad source must not hold the others back). ``evidence``: each source's statements."""
        alone = len(evidence) == 1
        reasons = json.dumps(cycle.detail.get("reasons", []))
        for (base, commit), digests in evidence.items():
            self.db.execute(
                "INSERT OR REPLACE INTO parked VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (cycle.repo, cycle.arch, base, commit, json.dumps(sorted(digests)), int(alone),
                 reasons, cycle.id, time.time()),
            )  # fmt: skip

    def parked(
        self, repo: str, arch: str, pkgbase: str, commit: str
    ) -> tuple[bool, list[str]] | None:
        """(refused alone, the evidence it was refused with) of a parked source, or None."""
        row = self.db.execute(
            "SELECT alone, evidence FROM parked WHERE repo=? AND arch=? AND pkgbase=? "
            "AND commit_id=?",
            (repo, arch, pkgbase, commit),
        ).fetchone()
        return None if row is None else (bool(row[0]), list(json.loads(row[1])))

    def parked_list(self) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT repo, arch, pkgbase, commit_id, alone, reasons, cycle FROM parked ORDER BY at"
        ).fetchall()
        return [
            {"repo": r, "arch": a, "pkgbase": b, "commit": c, "alone": bool(al),
             "reasons": json.loads(reasons), "cycle": cyc}
            for r, a, b, c, al, reasons, cyc in rows
        ]  # fmt: skip

    def unpark(self, repo: str, arch: str, pkgbase: str, commit: str) -> None:
        self.db.execute(
            "DELETE FROM parked WHERE repo=? AND arch=? AND pkgbase=? AND commit_id=?",
            (repo, arch, pkgbase, commit),
        )

    def is_published(self, repo: str, arch: str, pkgbase: str, commit: str) -> bool:
        return (
            self.db.execute(
                "SELECT 1 FROM published WHERE repo=? AND arch=? AND pkgbase=? AND commit_id=?",
                (repo, arch, pkgbase, commit),
            ).fetchone()
            is not None
        )

    def add_move(self, move: Move) -> None:
        self.db.execute(
            "INSERT OR IGNORE INTO move VALUES (?, ?, ?)",
            (move.id, json.dumps(move.to_json()), time.time()),
        )

    def moves(self) -> list[Move]:
        rows = self.db.execute("SELECT doc FROM move ORDER BY created").fetchall()
        return [Move.from_json(json.loads(r[0])) for r in rows]

    def moved_names(self, repo: str, arch: str, move_id: str) -> list[str]:
        """The package names the published cycle of a move brought into repo/arch."""
        row = self.db.execute(
            "SELECT c.plan FROM published p JOIN cycle c ON c.id = p.cycle "
            "WHERE p.repo=? AND p.arch=? AND p.pkgbase=? AND p.commit_id=?",
            (repo, arch, MOVE, move_id),
        ).fetchone()
        return list(json.loads(row[0]).get("names", [])) if row else []

    def has_failed(self, repo: str, arch: str, source_id: str) -> bool:
        """Did a cycle for repo/arch with this source (a move's id) fail? (It is not
        planned again by itself: the reasons are in `repo status`.)"""
        row = self.db.execute(
            "SELECT 1 FROM cycle WHERE step='failed' AND repo=? AND arch=? AND plan LIKE ?",
            (repo, arch, f'%"{source_id}"%'),
        ).fetchone()
        return row is not None

    def published_sources(self) -> set[tuple[str, str, str]]:
        """(repo, pkgbase, commit) of every source published (for some architecture)."""
        rows = self.db.execute("SELECT DISTINCT repo, pkgbase, commit_id FROM published")
        return {(str(r), str(b), str(c)) for r, b, c in rows.fetchall()}
