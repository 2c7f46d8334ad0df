#!/usr/bin/env python3
"""Witnesses (issue 18): `reposeal witness serve` add-checkpoint latency and throughput on
127.0.0.1; what witnessing adds to the repo machine's update cycle with three witnesses; and
`reposeal verify` of one repository against a 10,000-entry log with its cosignatures, beyond
fetching.

Targets: add-checkpoint median <= 5 ms and 1,000 checkpoints/s in sequence; the cycle's
added cost with 3 witnesses <= 100 ms; verify <= 50 ms beyond fetching.
Run by hand: `.venv/bin/python bench/witness_bench.py [--checkpoints 2000]`.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from reposeal.translog.checkpoint import Checkpoint, NoteSigner
from reposeal.translog.store import TransparencyLog
from tests.tools import WitnessProcess

ORIGIN = "bench.example/log"


def grow(log: TransparencyLog, signer: NoteSigner, n: int) -> bytes:
    """Append ``n`` entries; the signed checkpoint of the result."""
    start = log.size
    log.append([json.dumps({"type": "note", "i": start + i}).encode() for i in range(n)])
    return signer.sign(Checkpoint(ORIGIN, log.size, log.root()).text()).encode()


def body(old: int, proof: list[bytes], note: bytes) -> bytes:
    return b"\n".join([f"old {old}".encode(), *(base64.b64encode(h) for h in proof)]) + (
        b"\n\n" + note
    )


def bench_witness(work: Path, signer: NoteSigner, count: int) -> tuple[float, float, float]:
    """(median ms, p99 ms, checkpoints/s) of add-checkpoint on one kept-alive connection,
    the log growing by one entry per checkpoint (a consistency proof each time)."""
    w = WitnessProcess(work / "w", "bench.example/witness", [signer.verifier.encode()]).start()
    try:
        with TransparencyLog(work / "log.sqlite") as log:
            grow(log, signer, 1000)
            requests = []
            old = 0
            for _ in range(count):  # prepared first: the witness is what is measured
                note = grow(log, signer, 1)
                proof = log.consistency_proof(old, log.size) if old else []
                requests.append(body(old, proof, note))
                old = log.size
        conn = http.client.HTTPConnection("127.0.0.1", w.port, timeout=10)
        times = []
        t0 = time.perf_counter()
        for data in requests:
            t = time.perf_counter()
            conn.request("POST", "/add-checkpoint", body=data)
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                raise SystemExit(f"the witness answered {resp.status}")
            times.append(time.perf_counter() - t)
        total = time.perf_counter() - t0
        times.sort()
        return (statistics.median(times) * 1e3, times[int(len(times) * 0.99)] * 1e3,
                count / total)  # fmt: skip
    finally:
        w.stop()


def bench_cycle(work: Path, signer: NoteSigner, rounds: int = 30) -> float:
    """Median ms the repo machine spends witnessing a new checkpoint with 3 witnesses."""
    from reposeal.repo.witnessing import WitnessState, witness
    from reposeal.translog.witnesspolicy import WitnessEntry, k_of_n

    ws = [
        WitnessProcess(work / f"c{i}", f"w{i}.bench.example", [signer.verifier.encode()]).start()
        for i in range(3)
    ]
    try:
        from reposeal.translog.cosignature import CosignerKey

        entries = [
            WitnessEntry(f"w{i}", CosignerKey.decode(w.vkey), w.url) for i, w in enumerate(ws)
        ]
        policy = k_of_n(entries, 2)
        state = WitnessState(work / "witnesses.json")
        times = []
        with TransparencyLog(work / "cycle.sqlite") as log:
            grow(log, signer, 5000)
            for _ in range(rounds):
                note = grow(log, signer, 1)
                t = time.perf_counter()
                got = witness(note, policy, state, log.consistency_proof)
                times.append(time.perf_counter() - t)
                if not got.meets(policy):
                    raise SystemExit(f"not witnessed: {got.missing}")
        return statistics.median(times[1:]) * 1e3  # the first learns each witness's size
    finally:
        for w in ws:
            w.stop()


def bench_verify(work: Path, signer: NoteSigner, rounds: int = 20) -> tuple[float, float]:
    """(median ms, with a 10,000-entry log and 3 cosignatures; without witnesses) of
    `verify` with everything already fetched (in memory)."""
    from reposeal.client.verify import State, verify
    from reposeal.openpgp.soft import SoftSigner
    from reposeal.openpgp.verify import Keyring
    from reposeal.translog.cosignature import Cosigner, add_cosignatures
    from reposeal.translog.tiles import export
    from reposeal.translog.witnesspolicy import WitnessEntry, k_of_n

    key = work / "repo.key"
    subprocess.run([sys.executable, "-m", "reposeal.cli", "key", "generate", "--signer",
                    f"soft:{key}", "--uid", "bench <b@example>"], check=True,
                   capture_output=True)  # fmt: skip
    repo = SoftSigner(key)
    db = os.urandom(2 << 20)  # a 2 MiB database, as a core.db.tar.gz of 14,000 packages
    sig = repo.sign_detached(io.BytesIO(db))
    import hashlib

    genesis = {"type": "genesis", "note_verifier": signer.verifier.encode()}
    entries = [json.dumps(genesis).encode()]
    entries += [
        json.dumps({"type": "note", "i": i, "pad": "x" * 200}).encode() for i in range(9998)
    ]
    entries.append(json.dumps({"type": "db", "repo": "core", "arch": "x86_64",
                               "db_sha256": hashlib.sha256(db).hexdigest(),
                               "signature": base64.b64encode(sig).decode()}).encode())  # fmt: skip
    cosigners = [Cosigner.generate(f"w{i}.bench.example") for i in range(3)]
    policy = k_of_n([WitnessEntry(f"w{i}", c.key) for i, c in enumerate(cosigners)], 2)
    out = work / "mirror" / "log"
    with TransparencyLog(work / "verify.sqlite") as log:
        log.append(entries)
        text = Checkpoint(ORIGIN, log.size, log.root()).text()
        note = signer.sign(text).encode()
        note = add_cosignatures(note, [c.cosign(text, int(time.time())) for c in cosigners])
        plain = signer.sign(text).encode()
        export(log, out, note, log.size, repo.sign_detached(io.BytesIO(plain)))
    files = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    files |= {"core.db": db, "core.db.sig": sig}

    def fetch(url: str, limit: int) -> bytes:
        return files[url.split("/mem/", 1)[1].removeprefix("log/").removeprefix("repo/")]

    keyring = Keyring.from_bytes(repo.certificate())
    timings: dict[bool, list[float]] = {True: [], False: []}
    for i in range(rounds):
        for witnessed in (True, False):
            t = time.perf_counter()
            verify("mem://x/mem/repo", "core", keyring, State(work / f"state{i}{witnessed}"),
                   log_url="mem://x/mem/log", arch="x86_64", fetch=fetch,
                   witnesses=policy if witnessed else None)  # fmt: skip
            timings[witnessed].append(time.perf_counter() - t)
    return statistics.median(timings[True]) * 1e3, statistics.median(timings[False]) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoints", type=int, default=2000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="reposeal-witness-bench-"))
    try:
        signer = NoteSigner.generate(ORIGIN)
        median, p99, rate = bench_witness(work, signer, args.checkpoints)
        cycle = bench_cycle(work, signer)
        witnessed, plain = bench_verify(work, signer)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nwitnesses ({os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d')})\n")
    print("| what | measured | target |")
    print("|---|---:|---:|")
    print(
        f"| add-checkpoint, median ({args.checkpoints} in sequence, one connection) | "
        f"{median:.2f} ms (p99 {p99:.2f} ms) | <= 5 ms |"
    )
    print(f"| add-checkpoint, in sequence | {rate:,.0f} /s | >= 1,000 /s |")
    print(
        f"| update cycle: a new checkpoint cosigned by 3 witnesses (2 needed) | "
        f"{cycle:.1f} ms | <= 100 ms |"
    )
    extra = witnessed - plain
    print(f"| verify: 2 MiB database, 10,000-entry log, 3 cosignatures (fetched) | "
          f"{witnessed:.1f} ms ({extra:+.1f} ms for the witnesses) | <= 50 ms |")  # fmt: skip


if __name__ == "__main__":
    main()
