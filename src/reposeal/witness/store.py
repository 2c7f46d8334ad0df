"""What a witness keeps (SQLite): per log origin, the size, root and note it cosigned last.

The check against the held size and the update happen under one lock, and the update is
committed (synchronously, one statement) before the answer leaves: two requests can never
both pass against the same old size, and after a crash (kill -9 included) the witness holds
what it last cosigned, never less. The file is locked to this process (SQLite's exclusive
mode), so the copy of the held sizes kept in memory is the file's.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

from reposeal.errors import InputError
from reposeal.sqldb import open_db
from reposeal.witness.protocol import Accept, Refusal

SCHEMA = """
CREATE TABLE IF NOT EXISTS log (
    origin TEXT PRIMARY KEY, size INTEGER NOT NULL, root BLOB NOT NULL, note BLOB NOT NULL,
    cosigned REAL NOT NULL);
"""


class WitnessStore:
    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        try:
            self.db = open_db(path, SCHEMA)
            self.db.execute("PRAGMA synchronous=FULL")  # each commit on disk before the answer
            # one process owns the state (the lock is taken now and kept until exit): a
            # second witness on the same file is refused, never races the first
            self.db.execute("PRAGMA locking_mode=EXCLUSIVE")
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("COMMIT")
        except sqlite3.OperationalError:
            raise InputError(
                f"{path} is in use by another witness process: one process per state file"
            ) from None
        rows = self.db.execute("SELECT origin, size, root FROM log").fetchall()
        self._held = {str(o): (int(n), bytes(r)) for o, n, r in rows}

    def held(self, origin: str) -> tuple[int, bytes] | None:
        return self._held.get(origin)

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
        with self._lock:
            verdict = decide(self._held.get(origin))
            if isinstance(verdict, Refusal):
                return verdict
            note, now = cosign(verdict)
            cp = verdict.checkpoint
            self.db.execute(  # autocommit: its own transaction, on disk when it returns
                "INSERT INTO log VALUES (?, ?, ?, ?, ?) ON CONFLICT (origin) DO UPDATE SET "
                "size=excluded.size, root=excluded.root, note=excluded.note, "
                "cosigned=excluded.cosigned",
                (origin, cp.size, cp.root, note, now),
            )
            self._held[origin] = (cp.size, cp.root)
            return note
