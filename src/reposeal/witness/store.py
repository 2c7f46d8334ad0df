"""What a witness keeps (SQLite): per log origin, the size, root and note it cosigned last.

The check against the held size and the update happen in one write transaction, committed
before the answer leaves: two requests can never both pass against the same old size, and
after a crash (kill -9 included) the witness holds what it last cosigned, never less.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from reposeal.sqldb import open_db, transaction
from reposeal.witness.protocol import Accept, Refusal

SCHEMA = """
CREATE TABLE IF NOT EXISTS log (
    origin TEXT PRIMARY KEY, size INTEGER NOT NULL, root BLOB NOT NULL, note BLOB NOT NULL,
    cosigned REAL NOT NULL);
"""


class WitnessStore:
    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self.db = open_db(path, SCHEMA)
        self.db.execute("PRAGMA synchronous=FULL")

    def held(self, origin: str) -> tuple[int, bytes] | None:
        row = self.db.execute("SELECT size, root FROM log WHERE origin=?", (origin,)).fetchone()
        return None if row is None else (int(row[0]), bytes(row[1]))

    def latest(self, origin: str) -> bytes | None:
        """The last cosigned checkpoint of ``origin``, with this witness's cosignature."""
        row = self.db.execute("SELECT note FROM log WHERE origin=?", (origin,)).fetchone()
        return None if row is None else bytes(row[0])

    def origins(self) -> list[str]:
        return [str(r[0]) for r in self.db.execute("SELECT origin FROM log ORDER BY origin")]

    def update(
        self,
        origin: str,
        decide: Callable[[tuple[int, bytes] | None], Accept | Refusal],
        cosign: Callable[[Accept], tuple[bytes, float]],
    ) -> Accept | Refusal | bytes:
        """Decide against what is held and, if accepted, store the new checkpoint (the note
        with the cosignature ``cosign`` made) before returning it; all in one transaction."""
        with self._lock, transaction(self.db) as db:
            row = db.execute("SELECT size, root FROM log WHERE origin=?", (origin,)).fetchone()
            held = None if row is None else (int(row[0]), bytes(row[1]))
            verdict = decide(held)
            if isinstance(verdict, Refusal):
                return verdict
            note, now = cosign(verdict)
            cp = verdict.checkpoint
            db.execute(
                "INSERT INTO log VALUES (?, ?, ?, ?, ?) ON CONFLICT (origin) DO UPDATE SET "
                "size=excluded.size, root=excluded.root, note=excluded.note, "
                "cosigned=excluded.cosigned",
                (origin, cp.size, cp.root, note, now),
            )
            return note
