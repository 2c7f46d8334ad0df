"""The SQLite-backed log: proofs match the pure tree, and kill -9 never loses an
acknowledged entry nor leaves an inconsistent tree."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reposeal.translog import merkle
from reposeal.translog.store import LogCorruptError, TransparencyLog


def test_append_roots_and_proofs(tmp_path: Path) -> None:
    entries = [f"entry {i}".encode() for i in range(300)]
    with TransparencyLog(tmp_path / "log.sqlite") as log:
        for start in range(0, 300, 37):
            log.append(entries[start : start + 37])
        hashes = [merkle.leaf_hash(e) for e in entries]
        for n in (1, 2, 3, 7, 8, 9, 255, 256, 257, 300):
            root = merkle.root_of_leaves(hashes[:n])
            assert log.root(n) == root
            for i in {0, n // 2, n - 1}:
                merkle.verify_inclusion(i, n, hashes[i], log.inclusion_proof(i, n), root)
            for m in {1, n // 2 or 1, n}:
                merkle.verify_consistency(
                    m, n, merkle.root_of_leaves(hashes[:m]), root, log.consistency_proof(m, n)
                )
        log.verify(full=True)
    with TransparencyLog(tmp_path / "log.sqlite") as again:
        assert again.size == 300 and again.entry(299) == b"entry 299"


def test_tampering_is_found(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    with TransparencyLog(path) as log:
        log.append([b"a", b"b", b"c"])
        log.save_checkpoint(3, log.root(), b"note")
    db = sqlite3.connect(path)
    db.execute("UPDATE entry SET data=? WHERE idx=1", (b"B",))
    db.commit()
    db.close()
    with TransparencyLog(path) as log, pytest.raises(LogCorruptError, match="leaf hash"):
        log.verify(full=True)


WRITER = """
import sys
from pathlib import Path
from reposeal.translog.store import TransparencyLog
log = TransparencyLog(Path(sys.argv[1]))
i = log.size
while True:
    batch = [f"entry {j}".encode() for j in range(i, i + 50)]
    log.append(batch)
    i += 50
    print(i, flush=True)  # acknowledged: durable
"""


def test_kill_9_during_appends_keeps_every_acknowledged_entry(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    acknowledged = 0
    for round_ in range(4):
        child = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True
        )
        assert child.stdout is not None
        deadline = time.monotonic() + 0.3 + 0.2 * round_
        while time.monotonic() < deadline:
            line = child.stdout.readline()
            if line:
                acknowledged = max(acknowledged, int(line))
        child.send_signal(signal.SIGKILL)
        child.wait()
        with TransparencyLog(path) as log:
            assert log.size >= acknowledged
            log.verify(full=True)
            assert log.entry(acknowledged - 1) == f"entry {acknowledged - 1}".encode()
    assert acknowledged > 0


def test_entries_and_their_checkpoint_land_together(tmp_path: Path) -> None:
    seen: list[tuple[int, bytes]] = []

    def note(size: int, root: bytes) -> bytes:
        seen.append((size, root))
        return f"note {size}".encode()

    with TransparencyLog(tmp_path / "log.sqlite") as log:
        log.append([b"a", b"b"], checkpoint=note)
        assert seen == [(2, log.root(2))]
        assert log.latest_checkpoint() == (2, log.root(2), b"note 2")

        def broken(size: int, root: bytes) -> bytes:
            raise RuntimeError("the note key is gone")

        with pytest.raises(RuntimeError):
            log.append([b"c"], checkpoint=broken)
        assert log.size == 2, "no entry without its checkpoint"
    with TransparencyLog(tmp_path / "log.sqlite") as log:
        assert log.size == 2
        log.verify()
