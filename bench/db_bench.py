#!/usr/bin/env python3
"""reposeal db vs repo-add, in the same run, on the same synthetic packages.

(a) full build of the sync + files databases for N packages;
(b) adding one package to an N-package database, signed with gpg.

(c) adding one package, signed, to a distribution-shaped database (14,000 packages, about
1.5 million file paths, bench/common.py), beside repo-add on the same database.

Run by hand (`make bench` or `.venv/bin/python bench/db_bench.py`); prints a Markdown table.
Targets: (a) >= 50x faster than repo-add; (b) <= 0.3 s at N = 10,000 and >= 10x (issue 2);
(c) <= 0.3 s and >= 100x (issue 17). Our modules are byte-compiled first, as an installed
wheel's are.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from reposeal.alpm.synthetic import write_package
from reposeal.openpgp.gpg import generate_key

# the console script, as users (and the repo-add links) run it
REPOSEAL = [str(Path(sys.executable).with_name("reposeal"))]


def make_packages(directory: Path, n: int, prefix: str = "pkg") -> list[Path]:
    files = {
        f"usr/share/{prefix}/data.txt": b"x" * 300,
        f"usr/share/{prefix}/more/readme": b"y" * 100,
        f"usr/bin/{prefix}-tool": b"#!/bin/sh\n",
    }
    return [
        write_package(
            directory,
            f"{prefix}{i:05d}",
            f"1.{i}-1",
            "x86_64",
            files=files,
            depends=("glibc", "zlib>=1.2"),
        )
        for i in range(n)
    ]


def timed(args: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, env=env, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{args[:4]} failed:\n{proc.stderr.decode(errors='replace')}")
    return elapsed


def gpg_key(home: Path) -> str:
    home.mkdir(mode=0o700)
    return generate_key(home, "Bench <bench@example.org>")


def distro_case(
    work: Path, n: int, ext: str, fpr: str, env: dict[str, str], repeat: int
) -> tuple[str, float, float, str]:
    """(c): one signed add to a distribution-shaped database, reposeal and repo-add each on
    its own copy of the same database (the one reposeal wrote; repo-add reads it whole)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench.common import distro_packages

    pkgs = distro_packages(n)
    ours_dir, theirs_dir = work / "distro-ours", work / "distro-theirs"
    ours_dir.mkdir()
    theirs_dir.mkdir()
    t0 = time.perf_counter()
    timed([*REPOSEAL, "db", "add", "-q", "-s", "-k", fpr, str(ours_dir / f"d.db.tar.{ext}"),
           *map(str, pkgs)], env)  # fmt: skip
    print(f"built the {n}-package database in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    for part in ("db", "files"):
        for suffix in ("", ".sig"):
            name = f"d.{part}.tar.{ext}{suffix}"
            shutil.copyfile(ours_dir / name, theirs_dir / name)  # plain files, as repo-add's
    extras = [make_packages(work, 1, prefix=f"distroextra{r}")[0] for r in range(repeat)]
    db = str(ours_dir / f"d.db.tar.{ext}")
    runs = [timed([*REPOSEAL, "db", "add", "-q", "-s", "-k", fpr, db, str(e)], env) for e in extras]
    ours = sorted(runs)[repeat // 2]
    print("repo-add on the same database (about a minute)...", file=sys.stderr)
    theirs = timed(["repo-add", "-q", "-s", "-k", fpr, str(theirs_dir / f"d.db.tar.{ext}"),
                    str(extras[0])], env)  # fmt: skip
    return (f"(c) add 1, signed, distribution-shaped N={n:,}", ours, theirs, "≤ 0.3 s, ≥ 100x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", default="1000,10000", help="comma-separated N (default 1000,10000)")
    ap.add_argument("--compression", default="gz", choices=["gz", "zst"])
    ap.add_argument("--repeat", type=int, default=3, help="runs of (b); the median is shown")
    ap.add_argument(
        "--distro",
        type=int,
        default=14000,
        help="packages in the distribution-shaped case (c); 0 skips it",
    )
    ap.add_argument(
        "--repo-add-full-max",
        type=int,
        default=10000,
        help="above this N, repo-add's full build is extrapolated from 1,000",
    )
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    ext = args.compression
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed: byte-compiled once
    src = Path(__file__).resolve().parent.parent / "src"
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(src)], capture_output=True)
    work = Path(tempfile.mkdtemp(prefix="reposeal-bench-"))
    home = work / "gnupg"
    fpr = gpg_key(home)
    env = {**os.environ, "GNUPGHOME": str(home)}
    rows = []
    per_pkg_repo_add: float | None = None
    try:
        for n in sizes:
            src = work / f"pkgs{n}"
            src.mkdir()
            t0 = time.perf_counter()
            pkgs = make_packages(src, n)
            extras = [make_packages(src, 1, prefix=f"extra{r}")[0] for r in range(args.repeat)]
            print(f"generated {n} packages in {time.perf_counter() - t0:.1f}s", file=sys.stderr)

            # (a) full build
            ours_dir, theirs_dir = work / f"ours{n}", work / f"theirs{n}"
            ours_dir.mkdir()
            theirs_dir.mkdir()
            ours_full = timed(
                [*REPOSEAL, "db", "add", "-q", str(ours_dir / f"r.db.tar.{ext}"), *map(str, pkgs)]
            )
            if n <= args.repo_add_full_max:
                theirs_full = timed(
                    ["repo-add", "-q", str(theirs_dir / f"r.db.tar.{ext}"), *map(str, pkgs)], env
                )
                per_pkg_repo_add = theirs_full / n
                note = ""
            else:
                assert per_pkg_repo_add is not None, "run a smaller size first"
                theirs_full = per_pkg_repo_add * n
                note = " (repo-add extrapolated)"
                shutil.copytree(ours_dir, theirs_dir, dirs_exist_ok=True, symlinks=True)
            rows.append((f"(a) full build, N={n:,}{note}", ours_full, theirs_full, "≥ 50x"))

            # (b) add one package to an N-package database, signed
            ours_t, theirs_t = [], []
            for extra in extras:  # a new package each time, so every run really writes
                ours_t.append(
                    timed(
                        [
                            *REPOSEAL,
                            "db",
                            "add",
                            "-q",
                            "--sign",
                            "--key",
                            fpr,
                            str(ours_dir / f"r.db.tar.{ext}"),
                            str(extra),
                        ],
                        env,
                    )
                )
                theirs_t.append(
                    timed(
                        [
                            "repo-add",
                            "-q",
                            "--sign",
                            "--key",
                            fpr,
                            str(theirs_dir / f"r.db.tar.{ext}"),
                            str(extra),
                        ],
                        env,
                    )
                )
            ours_t.sort()
            theirs_t.sort()
            rows.append(
                (
                    f"(b) add 1, signed, N={n:,}",
                    ours_t[len(ours_t) // 2],
                    theirs_t[len(theirs_t) // 2],
                    "≤ 0.3 s, ≥ 10x",
                )
            )
            shutil.rmtree(src)
        if args.distro:
            rows.append(distro_case(work, args.distro, ext, fpr, env, args.repeat))
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False)
        shutil.rmtree(work, ignore_errors=True)

    print(
        f"\nreposeal db vs repo-add ({ext}, {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d')})\n"
    )
    print("| case | reposeal | repo-add | speed-up | target |")
    print("|---|---:|---:|---:|---|")
    for label, ours, theirs, target in rows:
        print(f"| {label} | {ours:.3f} s | {theirs:.2f} s | {theirs / ours:.0f}x | {target} |")


if __name__ == "__main__":
    main()
