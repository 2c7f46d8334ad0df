#!/usr/bin/env python3
"""What the typed records cost (issue 21), at distribution scale:

(a) a start-up replay's reading of a log of N entries (default 100,000: a repository of
    14,000 packages updated for years), each a `db` entry as the enclave writes it, read as
    JSON only and then as `policy.entries.LogEntry` (every field checked);
(b) the enclave's four writers' work per entry: `LogEntry.to_json` and canonical bytes;
(c) a bridge job of 14,000 files (an adoption) read as `protocol.jobformat.BridgeJob`, and
    the worker's answer to it as `enclave.decision.Decision` (JSON in, checked record out).

No repo-add counterpart (it keeps no log and takes no jobs), so no ratio; the target is that
the checks stay small beside what they guard: (a) <= 5 s for 100,000 entries (the replay
itself, records and state, is `bench/enclave_bench.py`'s), (c) <= 0.5 s.
Run by hand: `.venv/bin/python bench/records_bench.py [--entries 100000]`.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from reposeal import canonical
from reposeal.enclave.decision import Decision
from reposeal.policy.entries import LogEntry
from reposeal.protocol.jobformat import BridgeJob


def _sha(i: int, what: str = "") -> str:
    return hashlib.sha256(f"{what}{i}".encode()).hexdigest()


def db_entry(i: int) -> bytes:
    """A log entry of one package's update, as the enclave writes it."""
    name = f"pkg{i % 14_000:05d}"
    entry = LogEntry(
        "db", job=f"core-x86_64-{i}", request=_sha(i, "r"), repo="core", arch="x86_64",
        parent=_sha(i - 1, "d"), policy_version=3, evidence=(_sha(i, "a"), _sha(i, "b")),
        evidence_signatures={_sha(i, "a"): (_sha(i, "as"),), _sha(i, "b"): (_sha(i, "bs"),)},
        db_sha256=_sha(i, "d"), files_sha256=_sha(i, "f"), index_sha256=_sha(i, "i"),
        replaced=(f"{name}-1.{i}-1-x86_64.pkg.tar.zst",), admitted={name: (_sha(i, "a"),)},
        records=_sha(i, "rec"), compression=".zst", parent_files=_sha(i - 1, "f"),
        parent_index=_sha(i - 1, "i"), signature="iQEz" * 40, files_signature="iQEz" * 40,
        pkgbuilds=(_sha(i, "p"),),
    )  # fmt: skip
    return canonical.dumps(entry.to_json())


def timed(f: object, runs: int = 3) -> float:
    """The best of ``runs`` (the collector off while it runs: it otherwise walks every
    entry already read, and the order of the cases decides who pays for it)."""
    best = float("inf")
    for _ in range(runs):
        gc.collect()
        gc.disable()
        started = time.perf_counter()
        try:
            f()  # type: ignore[operator]
        finally:
            best = min(best, time.perf_counter() - started)
            gc.enable()
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--files", type=int, default=14_000)
    n, files = ap.parse_args().entries, ap.parse_args().files
    raw = [db_entry(i) for i in range(n)]
    docs = [json.loads(r) for r in raw]
    rows = []
    rows.append((f"{n:,} log entries: JSON only", timed(lambda: [json.loads(r) for r in raw]), ""))
    rows.append((f"{n:,} log entries: JSON and LogEntry", timed(
        lambda: [LogEntry.read(json.loads(r)) for r in raw]), "<= 5 s"))  # fmt: skip
    typed = [LogEntry.read(d) for d in docs]
    rows.append((f"{n:,} entries written (to_json, canonical)", timed(
        lambda: [canonical.dumps(e.to_json()) for e in typed]), ""))  # fmt: skip
    names = [f"p{i:05d}-1.0-1-x86_64.pkg.tar.zst" for i in range(files)]
    job = {"id": "adopt-core", "kind": "adopt", "repo": "core", "arch": "x86_64",
           "files": {f"packages/{p}": _sha(i) for i, p in enumerate(names)},
           "add": names, "compression": ".zst"}  # fmt: skip
    wire = json.dumps(job).encode()
    rows.append((f"a bridge job of {files:,} files -> BridgeJob", timed(
        lambda: BridgeJob.from_json(json.loads(wire))), "<= 0.5 s"))  # fmt: skip
    decision = Decision("accept", repo="core", arch="x86_64", policy_version=3,
                        evidence=tuple(_sha(i, "a") for i in range(files)),
                        evidence_signatures={_sha(i, "a"): (_sha(i, "s"),) for i in range(files)},
                        admitted={f"p{i:05d}": (_sha(i, "a"),) for i in range(files)},
                        adoption=True, db_sha256=_sha(0))  # fmt: skip
    answer = json.dumps(decision.to_json()).encode()
    rows.append(("the worker's answer to it -> Decision", timed(
        lambda: Decision.from_json(json.loads(answer))), "<= 0.5 s"))  # fmt: skip
    print(f"| {'case':<46} | {'time':>8} | target |")
    print(f"|{'-' * 48}|{'-' * 9}:|--------|")
    for case, seconds, target in rows:
        print(f"| {case:<46} | {seconds:7.2f}s | {target} |")


if __name__ == "__main__":
    main()
