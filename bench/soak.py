#!/usr/bin/env python3
"""A soak of the repo machine and the enclave (issue 16), on 127.0.0.1 only, bounded in count
and time: 50 proposals with random approvals (some one short of the quorum, some below the
published version), builds uploaded by two builders, `repo serve` and `enclave run` killed
with -9 at random moments and started again, idle periods longer than the services'
keep-alive. It ends with every approved package published exactly once, every one below the
published version parked with its reason, nothing signed twice, `audit` clean, and no
repeated refusals in the log. Exit 0 when all of that holds.

Run by hand: `.venv/bin/python bench/soak.py [--seed N]`.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from reposeal.alpm.synthetic import write_package
from reposeal.evidence.statements import Approval, Build, to_bytes
from reposeal.repo.bridge_client import BridgeClient, BridgeError
from reposeal.tls import client_context, issue, make_ca
from tests.policy.world import make_world

PROPOSALS = 50
DEADLINE = 600.0  # seconds for the whole soak
KEEPALIVE = "1"
CLI = [sys.executable, "-m", "reposeal.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Machines:
    """`repo serve --mirror` and `enclave run`, each killed and started again at will."""

    def __init__(self, work: Path, world: object) -> None:
        self.work, self.world = work, world
        ca = make_ca(work / "pki")
        self.certs = {"ca": ca}
        for role in ("bridge", "repo", "builder", "source", "enclave"):
            ip = "127.0.0.1" if role == "bridge" else None
            self.certs[role] = issue(ca, work / "pki", role, role, server_ip=ip)
        raw = world.policy().to_bytes()  # type: ignore[attr-defined]
        (work / "policy.json").write_bytes(raw)
        sigs = b"".join(p.sign(raw) for p in world.admins[:2])  # type: ignore[attr-defined]
        (work / "policy.json.sig").write_bytes(sigs)
        key = work / "repo.key"
        key.write_text(world.admins[2].signer.path.read_text())  # type: ignore[attr-defined]
        subprocess.run([*CLI, "enclave", "init", "--home", str(work / "enclave"), "--signer",
                        f"soft:{key}", "--policy", str(work / "policy.json"), "--origin",
                        "soak/log"], check=True, capture_output=True)  # fmt: skip
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.repo: subprocess.Popen[bytes] | None = None
        self.enclave: subprocess.Popen[bytes] | None = None
        self.env = {**os.environ, "REPOSEAL_KEEPALIVE": KEEPALIVE}

    def tls(self, role: str) -> list[str]:
        c = self.certs[role]
        return ["--cert", str(c.cert), "--key", str(c.key)]

    def start_repo(self) -> None:
        self.repo = subprocess.Popen(
            [*CLI, "repo", "serve", "--dir", str(self.work / "srv"), "--listen",
             f"127.0.0.1:{self.port}", *self.tls("bridge"), "--client-ca",
             str(self.certs["ca"].cert), "--policy", str(self.work / "policy.json"),
             "--mirror", str(self.work / "mirror")],
            env=self.env, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("repo serve did not start")

    def start_enclave(self) -> None:
        self.enclave = subprocess.Popen(
            [*CLI, "enclave", "run", "--home", str(self.work / "enclave"), "--bridge", self.url,
             *self.tls("enclave"), "--ca", str(self.certs["ca"].cert), "--wait", "5"],
            env=self.env, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def kill(self, which: str) -> None:
        proc = getattr(self, which)
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()

    def client(self, role: str) -> BridgeClient:
        return BridgeClient(self.url, client_context(self.certs[role], self.certs["ca"].cert))

    def stop(self) -> None:
        for which in ("enclave", "repo"):
            proc = getattr(self, which)
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(10)


def send(m: Machines, world: object, work: Path, base: str, version: str, approvers: int) -> None:
    """A build of BASE VERSION from two builders, and the approvals of ``approvers``."""
    pkgbuild = hashlib.sha256(f"{base} {version}".encode()).hexdigest()
    commit = commit_of(base, version)
    folder = work / "builds" / f"{base}-{version}"
    folder.mkdir(parents=True)
    pkg = write_package(folder, base, version, "x86_64", pkgbuild_sha256=pkgbuild)
    sha = hashlib.sha256(pkg.read_bytes()).hexdigest()
    build = to_bytes(Build(base, commit, pkg.name, sha, "0" * 64))
    approval = to_bytes(Approval("core", base, commit, pkgbuild))
    for attempt in range(20):  # the repo machine may be down right now: try again
        try:
            for b in world.builders[:2]:  # type: ignore[attr-defined]
                m.client("builder").upload_build(pkg, build, b.sign(build))
            for who in world.maintainers[:approvers]:  # type: ignore[attr-defined]
                m.client("source").push_statement(approval, who.sign(approval))
            return
        except BridgeError:
            time.sleep(0.2 * (attempt + 1))
    raise SystemExit(f"could not send {base} {version}")


def commit_of(base: str, version: str) -> str:
    return hashlib.sha1(f"{base} {version}".encode()).hexdigest()


def main() -> None:
    from reposeal.alpm.vercmp import vercmp

    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=1)
    rng = random.Random(parser.parse_args().seed)
    work = Path(tempfile.mkdtemp(prefix="reposeal-soak-"))
    (work / "keys").mkdir()
    world = make_world(work / "keys")
    m = Machines(work, world)
    started = time.monotonic()
    approved: dict[str, list[str]] = {}  # pkgbase -> every version with its quorum
    events = {"repo killed": 0, "enclave killed": 0, "idle": 0}
    try:
        m.start_repo()
        m.start_enclave()
        plan = [(f"soak{i:02d}", "1-1") for i in range(PROPOSALS // 2)]
        while len(plan) < PROPOSALS:
            proposal = (f"soak{rng.randrange(PROPOSALS // 2):02d}",
                        rng.choice(["2-1", "3-1", "0.5-1"]))  # fmt: skip
            if proposal not in plan:
                plan.append(proposal)
        for base, version in plan:
            approvers = 2 if rng.random() < 0.9 else 1  # some stay one approval short
            if approvers == 2:
                approved.setdefault(base, []).append(version)
            send(m, world, work, base, version, approvers)
            event = rng.random()
            if event < 0.1:
                m.kill("repo")
                m.start_repo()
                events["repo killed"] += 1
            elif event < 0.2:
                m.kill("enclave")
                m.start_enclave()
                events["enclave killed"] += 1
            elif event < 0.25:
                time.sleep(float(KEEPALIVE) + 0.5)  # idle past the keep-alive
                events["idle"] += 1
        expected = {b: max(vs, key=functools.cmp_to_key(vercmp)) for b, vs in approved.items()}
        seen = settle(m, expected, started)
    finally:
        m.stop()
    report(work, approved, expected, seen, events)
    shutil.rmtree(work, ignore_errors=True)


def settle(m: Machines, expected: dict[str, str], started: float) -> dict[str, str]:
    """Wait until the mirror holds every expected version and nothing is ready or under way
    any more (or time is up)."""
    from reposeal.alpm.syncdb import read_entries

    db = m.work / "mirror" / "core" / "os" / "x86_64" / "core.db"
    seen: dict[str, str] = {}
    while time.monotonic() - started < DEADLINE:
        try:
            seen = {n: e.version for n, e in read_entries(db, None).items()}
            status = m.client("repo").status()
        except Exception:
            time.sleep(0.5)
            continue
        busy = [c for c in status["cycles"] if c["step"] not in ("done", "failed")]
        if all(seen.get(b) == v for b, v in expected.items()) and not status["ready"] and not busy:
            return seen
        time.sleep(0.5)
    return seen


def report(
    work: Path,
    approved: dict[str, list[str]],
    expected: dict[str, str],
    seen: dict[str, str],
    events: dict[str, int],
) -> None:
    import sqlite3

    problems = [f"{b}: published {seen.get(b)}, expected {v}" for b, v in expected.items()
                if seen.get(b) != v]  # fmt: skip
    audit = subprocess.run([*CLI, "enclave", "audit", "--json", str(work / "enclave")],
                           capture_output=True, text=True)  # fmt: skip
    doc = json.loads(audit.stdout) if audit.stdout else {"ok": False}
    if not doc.get("ok"):
        problems.append(f"audit: {doc.get('violations') or audit.stderr[-300:]}")
    with sqlite3.connect(work / "srv" / "cycles" / "cycles.sqlite") as c:
        published = {(b, cm) for b, cm in c.execute("SELECT pkgbase, commit_id FROM published")}
        parked = {(b, cm) for b, cm in c.execute("SELECT pkgbase, commit_id FROM parked")}
    lower = 0
    for base, versions in approved.items():
        for v in versions:
            key = (base, commit_of(base, v))
            if key not in published and key not in parked:
                problems.append(f"{base} {v}: approved, but neither published nor parked")
            if key in published and key in parked:
                problems.append(f"{base} {v}: published, and still listed as parked")
            lower += key in parked
    refusals = doc.get("refusals", 0)
    if refusals > lower + 2:  # one refusal a parked source, not one a cycle
        problems.append(f"{refusals} refusals logged for {lower} parked sources: repeated")
    print(f"\nsoak: {sum(map(len, approved.values()))} approved versions of {len(expected)} "
          f"pkgbases, {lower} parked, {refusals} refusals logged, audit "
          f"{'clean' if doc.get('ok') else 'NOT clean'}; {events}")  # fmt: skip
    for p in problems:
        print(f"PROBLEM {p}")
    print("soak passed" if not problems else f"soak FAILED ({len(problems)} problems)")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
