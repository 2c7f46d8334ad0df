#!/usr/bin/env python3
"""Transparency log speed: appends/s (fsync per batch), proof times at 1M and 10M leaves.

Targets (issue 4): >= 1,000 appends/s batched with fsync; inclusion proof < 10 ms at 1M and
10M leaves. Run by hand: `.venv/bin/python bench/log_bench.py [--sizes 1000000,10000000]`.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from reposeal.translog import merkle
from reposeal.translog.store import TransparencyLog


def bench_decide(work: Path) -> float:
    """Median time of decide() on a 10,000-package repository where one package changes."""
    from reposeal.policy.decide import Addition, SigningState, Transition, decide
    from tests.policy.world import make_world, rec

    world = make_world(work)
    policy = world.policy()
    old = {f"pkg{i:05d}": rec(f"pkg{i:05d}", f"1.{i}-1") for i in range(10_000)}
    changed = rec("pkg05000", "2.0-1")
    state = SigningState(
        last_db={("core", "x86_64"): "db0"},
        highest={("core", r.name): r.version for r in old.values()},
        bindings={(r.name, r.version, r.arch): r.sha256 for r in old.values()},
        current={("core", "x86_64"): old},
        signatures={changed.sha256: "c2ln"},
    )
    request = Transition("core", "x86_64", "db0", {changed.name: Addition(changed)})
    evidence = world.evidence_for(changed, policy)
    times = []
    for _ in range(50):
        t = time.perf_counter()
        d = decide(state, request, evidence, policy)
        times.append(time.perf_counter() - t)
        assert d.accepted, d.reasons
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", default="1000000,10000000")
    args = ap.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    work = Path(tempfile.mkdtemp(prefix="reposeal-logbench-"))
    rows: list[tuple[str, str]] = []
    try:
        with TransparencyLog(work / "log.sqlite") as log:
            for batch in (1, 100, 1000):
                n, start = 0, time.perf_counter()
                while time.perf_counter() - start < 2.0:
                    log.append([f"sig {log.size + i}".encode() for i in range(batch)])
                    n += batch
                rate = n / (time.perf_counter() - start)
                rows.append((f"appends/s, batches of {batch}, fsync per batch", f"{rate:,.0f}"))
            for size in sizes:
                t0 = time.perf_counter()
                while log.size < size:
                    step = min(50_000, size - log.size)
                    log.append([b"x" * 120 + str(log.size + i).encode() for i in range(step)])
                size = log.size  # the append phase may have gone past it
                print(f"grew to {size:,} in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
                root = log.root()
                times = []
                for _ in range(300):
                    i = random.randrange(size)
                    t = time.perf_counter()
                    proof = log.inclusion_proof(i)
                    times.append(time.perf_counter() - t)
                    merkle.verify_inclusion(i, size, merkle.leaf_hash(log.entry(i)), proof, root)
                rows.append(
                    (
                        f"inclusion proof at {size:,} leaves (median / max)",
                        f"{statistics.median(times) * 1e3:.2f} ms / {max(times) * 1e3:.2f} ms",
                    )
                )
                times = []
                for _ in range(100):
                    m = random.randrange(1, size)
                    t = time.perf_counter()
                    log.consistency_proof(m)
                    times.append(time.perf_counter() - t)
                rows.append(
                    (
                        f"consistency proof at {size:,} leaves (median)",
                        f"{statistics.median(times) * 1e3:.2f} ms",
                    )
                )
        rows.append(
            (
                "decide(): 10,000-package transition with 1 change (median)",
                f"{bench_decide(work) * 1e3:.2f} ms",
            )
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\ntransparency log ({time.strftime('%Y-%m-%d')})\n")
    print("| measure | result |")
    print("|---|---:|")
    for label, value in rows:
        print(f"| {label} | {value} |")


if __name__ == "__main__":
    main()
