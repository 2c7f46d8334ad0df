#!/usr/bin/env python3
"""A soak of the whole pipeline (issue 16), on 127.0.0.1 only, bounded in count and time: 50
PKGBUILD commits in real git repositories watched by `source serve`, approved by maintainers
at random (some one short of the quorum, some below the published version), built with the
real makepkg by two `builder run` processes, which are killed with -9 and started again at
random like `repo serve` and `enclave run`, and idle periods longer than the services'
keep-alive. It ends with every approved package published exactly once, every one below the
published version parked with its reason, nothing signed twice, `audit` clean, and no
repeated refusals in the log. Exit 0 when all of that holds.

Run by hand: `.venv/bin/python bench/soak.py [--seed N]`.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from reposeal.errors import ReposealError
from reposeal.evidence.statements import Approval, to_bytes
from reposeal.protocol.bridge_client import BridgeClient, BridgeError
from reposeal.protocol.source_client import SourceClient
from reposeal.tls import client_context, issue, make_ca
from tests.policy.world import make_world
from tests.tools import free_port, pkgbuild, wait_port

PROPOSALS = 50
DEADLINE = 600.0  # seconds for the whole soak
KEEPALIVE = "1"
CLI = [sys.executable, "-m", "reposeal.cli"]


class Machines:
    """`repo serve --mirror`, `enclave run`, `source serve` and two `builder run`, each
    killed and started again at will."""

    def __init__(self, work: Path, world: object) -> None:
        self.work, self.world = work, world
        ca = make_ca(work / "pki")
        self.certs = {"ca": ca}
        roles = {"bridge": "bridge", "repo": "repo", "source": "source", "enclave": "enclave"}
        roles |= {"source-server": "source", "maint0": "maintainer", "maint1": "maintainer"}
        roles |= {"builder0": "builder", "builder1": "builder"}
        for name, role in roles.items():
            ip = "127.0.0.1" if name in ("bridge", "source-server") else None
            self.certs[name] = issue(ca, work / "pki", name, role, server_ip=ip)
        raw = world.policy().to_bytes()  # type: ignore[attr-defined]
        (work / "policy.json").write_bytes(raw)
        sigs = b"".join(p.sign(raw) for p in world.admins[:2])  # type: ignore[attr-defined]
        (work / "policy.json.sig").write_bytes(sigs)
        key = work / "repo.key"
        key.write_text(world.admins[2].signer.path.read_text())  # type: ignore[attr-defined]
        subprocess.run([*CLI, "enclave", "init", "--home", str(work / "enclave"), "--signer",
                        f"soft:{key}", "--policy", str(work / "policy.json"), "--origin",
                        "soak/log"], check=True, capture_output=True)  # fmt: skip
        self.port, self.source_port = free_port(), free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.source_url = f"https://127.0.0.1:{self.source_port}"
        self.git = work / "git"
        self.git.mkdir()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.env = {**os.environ, "REPOSEAL_KEEPALIVE": KEEPALIVE}
        self.logs = work / "logs"
        self.logs.mkdir()

    def tls(self, name: str) -> list[str]:
        c = self.certs[name]
        return ["--cert", str(c.cert), "--key", str(c.key)]

    def _start(self, which: str, args: list[str], port: int | None = None) -> None:
        log = open(self.logs / f"{which}.log", "ab")  # noqa: SIM115  (the child keeps it)
        self.procs[which] = subprocess.Popen([*CLI, *args], env=self.env, stdout=log, stderr=log)
        log.close()
        if port is not None:
            wait_port(port, which)

    def start(self, which: str) -> None:
        ca, policy = str(self.certs["ca"].cert), str(self.work / "policy.json")
        if which == "repo":
            self._start(which, ["repo", "serve", "--dir", str(self.work / "srv"), "--listen",
                                f"127.0.0.1:{self.port}", *self.tls("bridge"), "--client-ca",
                                ca, "--policy", policy, "--mirror", str(self.work / "mirror")],
                        self.port)  # fmt: skip
        elif which == "enclave":
            self._start(which, ["enclave", "run", "--home", str(self.work / "enclave"),
                                "--bridge", self.url, *self.tls("enclave"), "--ca", ca,
                                "--wait", "5"])  # fmt: skip
        elif which == "source":
            server = self.certs["source-server"]
            self._start(which, ["source", "serve", "--dir", str(self.work / "source"),
                                "--repos", str(self.git), "--listen",
                                f"127.0.0.1:{self.source_port}", "--server-cert",
                                str(server.cert), "--server-key", str(server.key),
                                "--client-ca", ca, "--policy", policy, "--repo-url", self.url,
                                *self.tls("source"), "--ca", ca, "--poll", "0.3"],
                        self.source_port)  # fmt: skip
        else:  # builder0, builder1
            i = int(which[-1])
            signer = self.world.builders[i].signer.path  # type: ignore[attr-defined]
            self._start(which, ["builder", "run", "--source", self.source_url, "--repo-url",
                                self.url, *self.tls(which), "--ca", ca, "--signer",
                                f"soft:{signer}", "--workdir", str(self.work / which),
                                "--wait", "5"])  # fmt: skip

    def kill(self, which: str) -> None:
        proc = self.procs.get(which)
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()

    def restart(self, which: str) -> None:
        self.kill(which)
        self.start(which)

    def client(self, role: str) -> BridgeClient:
        return BridgeClient(self.url, client_context(self.certs[role], self.certs["ca"].cert))

    def source(self, name: str) -> SourceClient:
        ctx = client_context(self.certs[name], self.certs["ca"].cert)
        return SourceClient(self.source_url, ctx, timeout=30)

    def stop(self) -> None:
        for which in ("builder0", "builder1", "enclave", "source", "repo"):
            proc = self.procs.get(which)
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()


def git(repo: Path, *args: str, stamp: int = 1_700_000_000) -> str:
    env = os.environ | {"GIT_AUTHOR_DATE": f"@{stamp}", "GIT_COMMITTER_DATE": f"@{stamp}"}
    who = ["-c", "user.name=Contributor", "-c", "user.email=contributor@example.org"]
    out = subprocess.run(["git", "-C", str(repo), *who, *args], capture_output=True, text=True,
                         env=env, check=True)  # fmt: skip
    return out.stdout.strip()


def send(m: Machines, world: object, base: str, version: str, approvers: int, n: int) -> str:
    """Commit BASE VERSION's PKGBUILD, wait for the source machine to propose it, and send
    the approvals of ``approvers`` maintainers; the commit id."""
    repo = m.git / base
    if not repo.exists():
        repo.mkdir()
        git(repo, "init", "-q", "-b", "main")
    ver, rel = version.split("-")
    (repo / "PKGBUILD").write_text(pkgbuild(base, ver, rel, "soak", "", f"{base} {version}"))
    git(repo, "add", "PKGBUILD")
    git(repo, "commit", "-q", "-m", f"{base} {version}", stamp=1_700_000_000 + n)
    commit = git(repo, "rev-parse", "HEAD")
    for _ in range(100):  # the source machine scans every 0.3 s
        try:
            doc = m.source("maint0").proposal(base, commit)
            break
        except (BridgeError, ReposealError):
            time.sleep(0.2)
    else:
        raise SystemExit(f"the source machine never proposed {base} {version}")
    raw = to_bytes(Approval("core", base, commit, doc["pkgbuild_sha256"], doc["author"]))
    for i, who in enumerate(world.maintainers[:approvers]):  # type: ignore[attr-defined]
        m.source(f"maint{i}").approve(raw, who.sign(raw))
    return commit


def main() -> None:
    from reposeal.alpm.vercmp import vercmp

    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="reposeal-soak-"))
    os.chmod(work, 0o755)  # the build user must reach its folders
    (work / "keys").mkdir()
    world = make_world(work / "keys")
    m = Machines(work, world)
    started = time.monotonic()
    approved: dict[str, list[str]] = {}  # pkgbase -> every version with its quorum
    commits: dict[tuple[str, str], str] = {}
    events = dict.fromkeys(("repo", "enclave", "builder0", "builder1"), 0) | {"idle": 0}
    try:
        for which in ("repo", "enclave", "source", "builder0", "builder1"):
            m.start(which)
        plan = [(f"soak{i:02d}", "1-1") for i in range(PROPOSALS // 2)]
        while len(plan) < PROPOSALS:
            proposal = (f"soak{rng.randrange(PROPOSALS // 2):02d}",
                        rng.choice(["2-1", "3-1", "0.5-1"]))  # fmt: skip
            if proposal not in plan:
                plan.append(proposal)
        for n, (base, version) in enumerate(plan):
            approvers = 2 if rng.random() < 0.9 else 1  # some stay one approval short
            if approvers == 2:
                approved.setdefault(base, []).append(version)
            commits[base, version] = send(m, world, base, version, approvers, n)
            event = rng.random()
            for which, p in (("repo", 0.06), ("enclave", 0.06), ("builder0", 0.06),
                             ("builder1", 0.06), ("idle", 0.05)):  # fmt: skip
                if event < p:
                    if which == "idle":
                        time.sleep(float(KEEPALIVE) + 0.5)  # idle past the keep-alive
                    else:
                        m.restart(which)  # kill -9, then start again
                    events[which] += 1
                    break
                event -= p
        expected = {b: max(vs, key=functools.cmp_to_key(vercmp)) for b, vs in approved.items()}
        wanted = {(b, commits[b, v]) for b, vs in approved.items() for v in vs}
        seen = settle(m, expected, wanted, started)
    finally:
        m.stop()
    ok = report(work, approved, commits, expected, seen, events)
    if args.keep or not ok:
        print(f"work folder kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(0 if ok else 1)


def settle(
    m: Machines, expected: dict[str, str], approved: set[tuple[str, str]], started: float
) -> dict[str, str]:
    """Wait until the mirror holds every expected version, every approved commit is
    published or parked (builds still under way at the builders count as not yet), and
    nothing is ready or under way at the repo machine (or time is up)."""
    import sqlite3

    from reposeal.alpm.syncdb import read_entries

    db = m.work / "mirror" / "core" / "os" / "x86_64" / "core.db"
    seen: dict[str, str] = {}
    while time.monotonic() - started < DEADLINE:
        try:
            seen = {n: e.version for n, e in read_entries(db, None).items()}
            status = m.client("repo").status()
            with sqlite3.connect(m.work / "srv" / "cycles" / "cycles.sqlite") as c:
                done = set(c.execute("SELECT pkgbase, commit_id FROM published"))
                done |= set(c.execute("SELECT pkgbase, commit_id FROM parked"))
        except Exception:
            time.sleep(0.5)
            continue
        busy = [c for c in status["cycles"] if c["step"] not in ("done", "failed")]
        if (all(seen.get(b) == v for b, v in expected.items()) and approved <= done
                and not status["ready"] and not busy):  # fmt: skip
            return seen
        time.sleep(0.5)
    return seen


def report(
    work: Path,
    approved: dict[str, list[str]],
    commits: dict[tuple[str, str], str],
    expected: dict[str, str],
    seen: dict[str, str],
    events: dict[str, int],
) -> bool:
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
            key = (base, commits[base, v])
            if key not in published and key not in parked:
                problems.append(f"{base} {v}: approved, but neither published nor parked")
            if key in published and key in parked:
                problems.append(f"{base} {v}: published, and still listed as parked")
            lower += key in parked
    refusals = doc.get("refusals", 0)
    if refusals > lower + 2:  # one refusal a parked source, not one a cycle
        problems.append(f"{refusals} refusals logged for {lower} parked sources: repeated")
    audited = "clean" if doc.get("ok") else "NOT clean"
    print(f"\nsoak: {sum(map(len, approved.values()))} approved versions of {len(expected)} "
          f"pkgbases, {lower} parked, {refusals} refusals logged, audit {audited}; "
          f"killed and restarted (or idle): {events}")  # fmt: skip
    for p in problems:
        print(f"PROBLEM {p}")
    print("soak passed" if not problems else f"soak FAILED ({len(problems)} problems)")
    return not problems


if __name__ == "__main__":
    main()
