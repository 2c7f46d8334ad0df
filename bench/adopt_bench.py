#!/usr/bin/env python3
"""Adopting an existing repository (issue 19): `enclave adopt` of N distribution-shaped
packages (default 14,000, about 1.5 million file paths) with a packager signature on each,
in the sandbox: every file read twice (reposeal and libarchive), every packager signature
verified, the first databases written, read back with libarchive and libalpm, signed and
logged. Beside it, the real repo-add making the database of the same files, for scale.

Target: <= 60 s for 14,000 packages on this 2-CPU machine, packager signatures included.
Run by hand: `.venv/bin/python bench/adopt_bench.py [--packages 14000] [--no-repo-add]`.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import CACHE, distro_packages, enclave_under_policy
from reposeal.enclave.jobs import propose
from reposeal.enclave.proposal import Proposal
from reposeal.enclave.sandbox import WorkerPool
from reposeal.evidence.statements import Adoption, to_bytes


def packager_signed(packages: list[Path], folder: Path) -> Path:
    """The packages with a packager's signature each (FILE.sig), in ``folder`` (hard links to
    the cached files; signatures made once with a packager key kept in the cache)."""
    from reposeal.openpgp.soft import SoftSigner

    key = CACHE / "packager.key"
    if not key.exists():
        subprocess.run([sys.executable, "-m", "reposeal.cli", "key", "generate", "--signer",
                        f"soft:{key}", "--uid", "Packager <packager@example.org>"], check=True,
                       capture_output=True)  # fmt: skip
    signer = SoftSigner(key)
    folder.mkdir(parents=True, exist_ok=True)
    for pkg in packages:
        sig = pkg.with_name(pkg.name + ".sig")
        if not sig.exists():
            sig.write_bytes(signer.sign_detached(io.BytesIO(pkg.read_bytes())))
        os.link(pkg, folder / pkg.name)  # the sandbox opens no symbolic link
        os.link(sig, folder / sig.name)
    (folder.parent / "packager.asc").write_bytes(signer.certificate())
    return folder.parent / "packager.asc"


def install_one(
    work: Path, home: Path | object, world: object, packager: Path, pool: Path, name: str
) -> str:
    """The real pacman (trusting the enclave's key and the packager's) syncs the adopted
    databases and installs ``name``'s package; what it says."""
    from reposeal.client.scratch import ScratchPacman
    from reposeal.enclave.home import EnclaveHome

    assert isinstance(home, EnclaveHome)
    served = work / "served"
    served.mkdir()
    last = home.last_databases("core", "x86_64")
    assert last is not None
    (served / "core.db").write_bytes(home.read_db(last.db))
    signature = base64.b64decode(home_entry_signature(home))
    (served / "core.db.sig").write_bytes(signature)
    for f in pool.glob(name + "*"):
        os.link(f, served / f.name)
    scratch = ScratchPacman(work / "pacman", {"core": served})
    scratch.base.mkdir()
    cert = work / "repo.asc"
    cert.write_text(world.admins[2].cert)  # type: ignore[attr-defined]
    scratch.trust(cert, world.admins[2].fpr)  # type: ignore[attr-defined]
    from reposeal.openpgp.soft import SoftSigner

    scratch.trust(packager, SoftSigner(CACHE / "packager.key").fingerprint)
    scratch.write_conf()
    t = time.perf_counter()
    subprocess.run(scratch.command("-Sy"), check=True, capture_output=True)
    pkgname = name.rsplit("-", 3)[0]
    subprocess.run(scratch.command("-Sdd", "--noconfirm", pkgname), check=True,
                   capture_output=True)  # fmt: skip
    done = subprocess.run(scratch.command("-Q", pkgname), capture_output=True, text=True)
    subprocess.run(["gpgconf", "--homedir", str(scratch.gpgdir), "--kill", "all"],
                   capture_output=True)  # fmt: skip
    return f"{done.stdout.strip()} installed in {time.perf_counter() - t:.1f} s"


def home_entry_signature(home: object) -> str:
    """The signature the enclave logged for its last database."""
    import json

    from reposeal.translog.store import TransparencyLog

    path = home.path / "log.sqlite"  # type: ignore[attr-defined]
    with TransparencyLog(path) as log:
        doc = json.loads(log.entry(log.size - 1))
    return str(doc["signature"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--packages", type=int, default=14_000)
    parser.add_argument(
        "--no-repo-add",
        action="store_true",
        help="make the statement from the files (no repo-add, no adopt plan)",
    )
    parser.add_argument("--pacman", action="store_true",
                        help="then the real pacman syncs the adopted repository and installs "
                        "a package from it")  # fmt: skip
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="reposeal-adoptbench-"))
    try:
        world, home = enclave_under_policy(work, "b/log")
        print(f"{args.packages:,} distribution-shaped packages ...", file=sys.stderr)
        packages = distro_packages(args.packages)
        print("packager signatures ...", file=sys.stderr)
        folder = work / "old-repo" / "pool"
        ring_path = packager_signed(packages, folder)
        keyring = ring_path.read_bytes()
        repo_add = plan_time = None
        if args.no_repo_add:  # the statement straight from the files
            files = tuple(
                sorted((p.name, hashlib.sha256(p.read_bytes()).hexdigest()) for p in packages)
            )
            adoption = Adoption("core", "x86_64", files, hashlib.sha256(keyring).hexdigest())
        else:  # as an admin does it: the real repo-add's repository, then `adopt plan`
            print("the real repo-add of the files ...", file=sys.stderr)
            t = time.perf_counter()
            made = subprocess.run(["repo-add", "-q", str(folder / "core.db.tar.gz"),
                                   *map(str, sorted(folder.glob("*.pkg.tar.zst")))],
                                  capture_output=True, text=True)  # fmt: skip
            if made.returncode != 0:
                raise SystemExit(f"repo-add failed: {made.stderr[-500:]}")
            repo_add = time.perf_counter() - t
            from reposeal.adopt.plan import plan
            from reposeal.openpgp.verify import Keyring

            t = time.perf_counter()
            planned = plan(folder, "core", "x86_64", (Keyring.from_bytes(keyring), keyring))
            plan_time = time.perf_counter() - t
            if planned.problems:
                raise SystemExit(f"adopt plan: {planned.problems[:5]}")
            adoption = planned.statement
        statement = to_bytes(adoption)
        evidence = work / "evidence"
        evidence.mkdir()
        (evidence / "adoption.json").write_bytes(statement)
        (evidence / "adoption.json.sig").write_bytes(
            b"".join(p.sign(statement) for p in world.admins[:2])
        )
        pool = WorkerPool()
        pool.start()
        print("adopting ...", file=sys.stderr)
        t = time.perf_counter()
        names = tuple(f for f, _ in adoption.files)
        result = propose(
            home,
            "adopt-bench",
            Proposal("core", "x86_64", add=names, parent=None, adopt=True),
            folder,
            evidence=evidence,
            pool=pool,
            keyring=keyring,
        )
        adopt_time = time.perf_counter() - t
        pool.close()
        if result.decision != "accept":
            raise SystemExit(f"refused: {result.reasons[:5]}")
        if args.pacman:
            installed = install_one(work, home, world, ring_path, folder, names[0])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nadoption ({os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d')})\n")
    print("| what | time | target |")
    print("|---|---:|---:|")
    print(f"| enclave adopt, {args.packages:,} packages with packager signatures (sandbox) | "
          f"{adopt_time:.1f} s | <= 60 s |")  # fmt: skip
    if repo_add is not None and plan_time is not None:
        print(f"| adopt plan of the repo-add repository (packager signatures checked) | "
              f"{plan_time:.1f} s | |")  # fmt: skip
        print(f"| repo-add of the same files (no signature checks) | {repo_add:.1f} s | |")
        print(f"| ratio repo-add / enclave adopt | {repo_add / adopt_time:.1f}x | |")
    if args.pacman:
        print(f"| pacman -Sy and -Sdd of one adopted package | {installed} | |")


if __name__ == "__main__":
    main()
