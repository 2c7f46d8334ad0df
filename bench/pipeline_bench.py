#!/usr/bin/env python3
"""The whole pipeline's speed: from the second maintainer approval arriving at the source
machine to the package installable by pacman from the mirror, with two local builders of
a trivial package (real git, makepkg in bubblewrap, the repo service, `enclave run`, all
on this machine). Target < 10 s, most of it makepkg. Prints the time of each stage.

Run by hand: `.venv/bin/python bench/pipeline_bench.py`.
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from reposeal.evidence.statements import Approval, to_bytes
from tests import tools
from tests.e2e.test_pipeline_e2e import Pipeline, commit_pkgbuild
from tests.e2e.test_repo_cycle_e2e import enclave_run, init_enclave, pacman_trusting_the_enclave
from tests.e2e.test_repo_intake_e2e import start_service
from tests.policy.world import make_world


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="reposeal-pipebench-"))
    (work / "keys").mkdir()
    world = make_world(work / "keys")
    service = start_service(work, world, "--mirror", str(work / "mirror"))
    url, certs = next(service)
    p = Pipeline(work, world, url, certs)
    try:
        home = init_enclave(work, world)
        run = [
            sys.executable,
            "-m",
            "reposeal.cli",
            *enclave_run((url, certs), home),
            "--wait",
            "5",
        ]
        p.procs.append(subprocess.Popen(run, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        p.start_source()
        for who in (0, 1):  # two long-lived builders, long-polling the source machine
            cmd = [
                sys.executable, "-m", "reposeal.cli", "builder", "run", "--source", p.url,
                "--repo-url", url, *p.tls(f"builder{who}"),
                "--signer", f"soft:{world.builders[who].signer.path}",
                "--workdir", str(p.workdir), "--wait", "30",
            ]  # fmt: skip
            p.procs.append(
                subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )
        commit = commit_pkgbuild(p.git, "hello-1.0", 1_700_000_000)
        proposal = p.proposal(commit)
        stmt = to_bytes(Approval("core", "hello", commit, proposal["pkgbuild_sha256"], None))
        first = world.maintainers[0].signer.sign_detached(io.BytesIO(stmt))
        assert p.client("maint0").approve(stmt, first)["job"] is None
        second = world.maintainers[1].signer.sign_detached(io.BytesIO(stmt))
        scratch = pacman_trusting_the_enclave(work, world, work / "mirror/core/os/x86_64")
        db = work / "mirror" / "core" / "os" / "x86_64" / "core.db"

        t0 = time.time()  # the second approval arrives
        assert p.client("maint1").approve(stmt, second)["job"]
        t_job = time.time()
        built_at = None
        while True:
            if built_at is None:
                (job,) = p.proposal(commit)["jobs"]
                if len(job["built_by"]) == 2:
                    built_at = time.time()
            if db.exists():
                break
            if time.time() - t0 > 120:
                raise SystemExit("not published within 120 s")
            time.sleep(0.02)
        t_db = time.time()
        tools.run_text(scratch.command("-Sy"))
        tools.run_text(scratch.command("-S", "--noconfirm", "hello"))
        t_installed = time.time()
        tools.gpg_kill(scratch.gpgdir)
        if built_at is None:
            built_at = t_db
        with sqlite3.connect(work / "srv" / "cycles" / "cycles.sqlite") as c:
            (detail,) = c.execute("SELECT detail FROM cycle").fetchone()
        times = json.loads(detail)["times"]
    finally:
        p.close()
        service.close()

    rows = [
        ("second approval -> build job (source machine)", t_job - t0),
        (
            "build job -> both builders built, attested, uploaded (makepkg in bwrap)",
            built_at - t_job,
        ),
        ("-> repo machine starts the cycle", times["sign-packages"] - built_at),
        ("enclave signs the package", times["pool"] - times["sign-packages"]),
        ("package and its signature to the mirror", times["propose"] - times["pool"]),
        (
            "enclave writes, reads back and signs both databases; the repo machine puts them "
            "together from the chunks that changed",
            times["witness"] - times["propose"],
        ),
        ("its log entry pushed and on the mirror", times["publish"] - times["witness"]),
        ("databases published", t_db - times["publish"]),
        ("pacman -Sy and -S from the mirror (scratch root)", t_installed - t_db),
    ]
    print(f"\npipeline (2 CPUs, {time.strftime('%Y-%m-%d')})\n")
    print("| stage | time |")
    print("|---|---:|")
    for label, seconds in rows:
        print(f"| {label} | {seconds:.2f} s |")
    total = t_installed - t0
    print(f"| **second approval -> installed by pacman** | **{total:.2f} s** (target < 10 s) |")


if __name__ == "__main__":
    main()
