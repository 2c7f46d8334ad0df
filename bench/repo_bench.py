#!/usr/bin/env python3
"""Repo machine speed: from the last evidence arriving to the signed databases on the
mirror, for one package into a distribution-shaped 14,000-package repository (about 1.5
million file paths), with `repo serve --mirror` and a running `enclave run` on the same
machine (target <= 1 s), with the time of each step; and the real `repo-add --sign` adding
the same package to the same repository, for scale.

The 14,000-package repository is taken as already signed (``bench.common.take_as_signed``):
its databases are published on the mirror and named by the enclave's log (the benchmark
measures one update, not the bootstrap). Run by hand: `.venv/bin/python bench/repo_bench.py`.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import N, distro_packages, take_as_signed
from reposeal.alpm.synthetic import write_package
from reposeal.enclave.home import init_home
from reposeal.evidence.statements import Approval, Build, to_bytes
from reposeal.protocol.bridge_client import BridgeClient
from reposeal.repo.dbupdate import publish_staged
from reposeal.tls import client_context
from tests.e2e.test_repo_cycle_e2e import enclave_run
from tests.e2e.test_repo_intake_e2e import start_service
from tests.policy.world import make_world

PKGBUILD = hashlib.sha256(b"PKGBUILD").hexdigest()
COMMIT = "e" * 40


def cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "reposeal.cli", *args], check=True, capture_output=True)


def bootstrap(work: Path, world: object, pool: Path, packages: list[Path]) -> Path:
    """An enclave whose log names the published 14,000-package databases as signed."""
    policy = work / "policy.json"
    raw = world.policy().to_bytes()  # type: ignore[attr-defined]
    policy.write_bytes(raw)
    admins = world.admins  # type: ignore[attr-defined]
    policy.with_name("policy.json.sig").write_bytes(b"".join(p.sign(raw) for p in admins[:2]))
    home = init_home(work / "enclave", f"soft:{admins[2].signer.path}", policy, "bench/log")
    published = take_as_signed(home, packages)
    publish_staged(pool / "core.db.tar.gz", published)
    for p in packages:
        os.link(p, pool / p.name)
    return home.path


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="reposeal-repobench-"))
    procs: list[subprocess.Popen[bytes]] = []
    service = None
    try:
        (work / "keys").mkdir()
        world = make_world(work / "keys")
        print(f"{N:,} distribution-shaped packages, taken as signed ...", file=sys.stderr)
        packages = distro_packages()
        pool = work / "mirror" / "core" / "os" / "x86_64"
        pool.mkdir(parents=True)
        home = bootstrap(work, world, pool, packages)

        service = start_service(work, world, "--mirror", str(work / "mirror"))
        url, certs = next(service)  # the same `repo serve` the tests start
        run = enclave_run((url, certs), home)
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "reposeal.cli", *run, "--wait", "30"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        time.sleep(5)  # the enclave verifies its log and starts its sandbox

        def client(role: str) -> BridgeClient:
            return BridgeClient(url, client_context(certs[role], certs["ca"].cert), timeout=60)

        pkg = write_package(work, "zz-new", "1-1", "x86_64", pkgbuild_sha256=PKGBUILD)
        sha = hashlib.sha256(pkg.read_bytes()).hexdigest()
        build = to_bytes(Build("zz-new", COMMIT, pkg.name, sha, "0" * 64))
        for b in world.builders[:2]:
            client("builder").upload_build(pkg, build, b.sign(build))
        approval = to_bytes(Approval("core", "zz-new", COMMIT, PKGBUILD))
        source = client("source")
        source.push_statement(approval, world.maintainers[0].sign(approval))
        db = pool / "core.db.tar.gz"
        before = hashlib.sha256(db.read_bytes()).hexdigest()

        t0 = time.time()
        source.push_statement(approval, world.maintainers[1].sign(approval))  # the last one
        while hashlib.sha256(db.read_bytes()).hexdigest() == before:
            if time.time() - t0 > 60:
                raise SystemExit(f"not published: {client('repo').status()}")
            time.sleep(0.005)
        total = time.time() - t0

        times: dict[str, float] = {}
        while "done" not in times:  # the cycle records its end after the log's export
            with sqlite3.connect(work / "srv" / "cycles" / "cycles.sqlite") as c:
                (detail,) = c.execute("SELECT detail FROM cycle").fetchone()
            times = json.loads(detail)["times"]
            time.sleep(0.01)
        steps = ["sign-packages", "pool", "propose", "witness", "publish", "log", "done"]
        rows = [("evidence arrives -> cycle planned", times["sign-packages"] - t0)]
        labels = {
            "sign-packages": "enclave signs the package (bridge round trip)",
            "pool": "package and signature to the mirror",
            "propose": (
                "enclave writes, reads back and signs both databases (bridge round trip); "
                "the repo machine puts them together from the chunks that changed"
            ),
            "witness": "the enclave pushes its log; cosignatures (if the policy names "
            "witnesses); tiles + checkpoint to the mirror",
            "publish": "databases and signatures published",
            "log": "(after) the cycle is recorded done",
        }
        for a, b in itertools.pairwise(steps):
            rows.append((labels[a], times[b] - times[a]))

        # the same addition with the real repo-add --sign (gpg), for scale
        gnupg = work / "gnupg"
        gnupg.mkdir(mode=0o700)
        subprocess.run(
            [
                "gpg",
                "--homedir",
                str(gnupg),
                "--batch",
                "--import",
                str(world.admins[2].signer.path),
            ],
            check=True,
            capture_output=True,
        )
        copy = work / "repoadd"
        shutil.copytree(pool, copy, symlinks=False)
        for f in copy.glob("core.*"):
            if f.is_symlink():
                f.unlink()
        env = {**os.environ, "GNUPGHOME": str(gnupg)}
        t = time.perf_counter()
        subprocess.run(
            [
                "repo-add",
                "-q",
                "--sign",
                "--key",
                world.admins[2].fpr,
                str(copy / "core.db.tar.gz"),
                str(pkg),
            ],
            check=True,
            capture_output=True,
            env=env,
        )
        repo_add = time.perf_counter() - t
    finally:
        for p in procs:  # the enclave first: its long poll holds the service
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if service is not None:
            service.close()
        if os.environ.get("KEEP"):
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\nrepo machine ({os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d')})\n")
    print("| step | time |")
    print("|---|---:|")
    for label, seconds in rows:
        print(f"| {label} | {seconds * 1000:.0f} ms |")
    print(
        f"| **last evidence -> signed database on the mirror, {N:,} packages** "
        f"| **{total:.2f} s** (target <= 1 s) |"
    )
    print(
        f"| for scale: `repo-add --sign` of the same package (no evidence, no enclave) "
        f"| {repo_add:.2f} s ({repo_add / total:.0f}x the whole pipeline) |"
    )


if __name__ == "__main__":
    main()
