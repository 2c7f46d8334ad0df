"""The log's storage: entries and every perfect-subtree hash in SQLite (WAL, fsync on commit).

Appending leaf i stores its hash and, while i is a right child, the parent; so every aligned
power-of-two subtree has its hash on disk and any proof costs O(log n) lookups. A commit is
durable when ``append`` returns (``synchronous=FULL``); a crash loses at most the batch that
had not returned, and the next open finds a complete, consistent tree.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

from reposeal.alpm.limits import MAX_ENTRY_BYTES
from reposeal.errors import ReposealError
from reposeal.sqldb import transaction
from reposeal.translog import merkle

SCHEMA_VERSION = 1


class LogCorruptError(ReposealError):
    """The stored log does not hash to what it claims: stop and investigate."""


class TransparencyLog:
    """An append-only RFC 6962 log stored in one SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(
            """
            CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS entry (idx INTEGER PRIMARY KEY, data BLOB NOT NULL);
            CREATE TABLE IF NOT EXISTS node (
                level INTEGER NOT NULL, idx INTEGER NOT NULL, hash BLOB NOT NULL,
                PRIMARY KEY (level, idx)) WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS checkpoint (
                size INTEGER PRIMARY KEY, root BLOB NOT NULL, note BLOB NOT NULL);
            """
        )
        self._db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        (version,) = self._db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        if version != str(SCHEMA_VERSION):
            raise LogCorruptError(f"unknown log schema {version}", path=path)
        self._size = self._count()

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> TransparencyLog:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _count(self) -> int:
        row = self._db.execute("SELECT MAX(idx) FROM entry").fetchone()
        return 0 if row[0] is None else int(row[0]) + 1

    def refresh(self) -> None:
        """See entries another connection appended since (the size is read once, on open)."""
        self._size = self._count()

    @property
    def size(self) -> int:
        return self._size

    def append(
        self, entries: Sequence[bytes], checkpoint: Callable[[int, bytes], bytes] | None = None
    ) -> list[int]:
        """Append a batch in one durable transaction; return the new entries' indexes.

        ``checkpoint(size, root)``, if given, returns the signed note for the new tree; it is
        stored in the same transaction, so entries and their checkpoint land together."""
        for e in entries:
            if len(e) > MAX_ENTRY_BYTES:
                raise ValueError(f"log entry of {len(e)} bytes is too large")
        start = self._size
        nodes: list[tuple[int, int, bytes]] = []
        pending: dict[tuple[int, int], bytes] = {}

        def lookup(level: int, idx: int) -> bytes:
            h = pending.get((level, idx))
            return h if h is not None else self._node(level, idx)

        for offset, data in enumerate(entries):
            idx = start + offset
            h = merkle.leaf_hash(data)
            level = 0
            pending[(0, idx)] = h
            nodes.append((0, idx, h))
            while idx & 1:
                h = merkle.node_hash(lookup(level, idx - 1), h)
                level, idx = level + 1, idx >> 1
                pending[(level, idx)] = h
                nodes.append((level, idx, h))
        with transaction(self._db) as db:
            db.executemany(
                "INSERT INTO entry (idx, data) VALUES (?, ?)",
                [(start + i, e) for i, e in enumerate(entries)],
            )
            db.executemany("INSERT INTO node (level, idx, hash) VALUES (?, ?, ?)", nodes)
            if checkpoint is not None:
                size = start + len(entries)
                root = merkle.subtree_root(self._perfect, 0, size)  # sees the rows just added
                db.execute(
                    "INSERT OR REPLACE INTO checkpoint VALUES (?, ?, ?)",
                    (size, root, checkpoint(size, root)),
                )
        self._size = start + len(entries)
        return list(range(start, self._size))

    def _node(self, level: int, idx: int) -> bytes:
        row = self._db.execute(
            "SELECT hash FROM node WHERE level=? AND idx=?", (level, idx)
        ).fetchone()
        if row is None:
            raise LogCorruptError(f"missing tree node ({level}, {idx})", path=self.path)
        return bytes(row[0])

    def _perfect(self, start: int, size: int) -> bytes:
        level = size.bit_length() - 1
        return self._node(level, start >> level)

    def root(self, size: int | None = None) -> bytes:
        n = self._size if size is None else size
        if not 0 <= n <= self._size:
            raise ValueError(f"the log has {self._size} entries, not {n}")
        return merkle.subtree_root(self._perfect, 0, n)

    def entry(self, idx: int) -> bytes:
        row = self._db.execute("SELECT data FROM entry WHERE idx=?", (idx,)).fetchone()
        if row is None:
            raise IndexError(idx)
        return bytes(row[0])

    def entries(self, start: int, stop: int) -> list[bytes]:
        rows = self._db.execute(
            "SELECT data FROM entry WHERE idx >= ? AND idx < ? ORDER BY idx", (start, stop)
        ).fetchall()
        return [bytes(r[0]) for r in rows]

    def leaf_hashes(self, level: int, start: int, stop: int) -> list[bytes]:
        """Stored hashes of one tree level, indexes [start, stop)."""
        rows = self._db.execute(
            "SELECT hash FROM node WHERE level=? AND idx >= ? AND idx < ? ORDER BY idx",
            (level, start, stop),
        ).fetchall()
        return [bytes(r[0]) for r in rows]

    def inclusion_proof(self, idx: int, size: int | None = None) -> list[bytes]:
        return merkle.inclusion_proof(self._perfect, idx, self._size if size is None else size)

    def consistency_proof(self, old: int, new: int | None = None) -> list[bytes]:
        return merkle.consistency_proof(self._perfect, old, self._size if new is None else new)

    # --- checkpoints --------------------------------------------------------------------------

    def save_checkpoint(self, size: int, root: bytes, note: bytes) -> None:
        if root != self.root(size):
            raise LogCorruptError("refusing to store a checkpoint with a wrong root")
        with transaction(self._db) as db:
            db.execute("INSERT OR REPLACE INTO checkpoint VALUES (?, ?, ?)", (size, root, note))

    def latest_checkpoint(self) -> tuple[int, bytes, bytes] | None:
        row = self._db.execute(
            "SELECT size, root, note FROM checkpoint ORDER BY size DESC LIMIT 1"
        ).fetchone()
        return None if row is None else (int(row[0]), bytes(row[1]), bytes(row[2]))

    # --- verification -------------------------------------------------------------------------

    def verify(self, full: bool = True, since: int = 0) -> None:
        """Check the stored tree. ``full`` re-hashes every entry and node (O(n)); otherwise
        the entries from ``since`` on (a caller that checked the ones before), the stored
        root path and the latest checkpoint are checked (O(log n) plus the new entries)."""
        n = self._size
        start = 0 if full else min(since, n)
        count = self._db.execute("SELECT COUNT(*) FROM entry WHERE idx >= ?", (start,))
        if n and count.fetchone()[0] != n - start:
            raise LogCorruptError("entry indexes have gaps", path=self.path)
        if full:
            self._verify_all(n)
        latest = self.latest_checkpoint()
        if latest is not None:
            size, root, _ = latest
            if size > n:
                raise LogCorruptError(
                    f"checkpoint for {size} entries but only {n} are stored (rolled back?)",
                    path=self.path,
                )
            if self.root(size) != root:
                raise LogCorruptError("the latest checkpoint's root does not match", path=self.path)

    def _verify_all(self, n: int) -> None:
        level_hashes: list[bytes] = []
        batch = 65536
        for start in range(0, n, batch):
            entries = self.entries(start, min(n, start + batch))
            stored = self.leaf_hashes(0, start, min(n, start + batch))
            computed = [merkle.leaf_hash(e) for e in entries]
            if computed != stored:
                raise LogCorruptError("an entry does not match its leaf hash", path=self.path)
            level_hashes += computed
        level = 0
        while len(level_hashes) > 1:
            parents = [
                merkle.node_hash(level_hashes[i], level_hashes[i + 1])
                for i in range(0, len(level_hashes) - 1, 2)
            ]
            if parents != self.leaf_hashes(level + 1, 0, len(parents)):
                raise LogCorruptError(f"tree level {level + 1} is inconsistent", path=self.path)
            level_hashes = parents
            level += 1
