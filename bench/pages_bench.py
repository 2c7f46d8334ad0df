#!/usr/bin/env python3
"""The pages operators and the public read (issue 20), at distribution scale:

(a) the provenance site for a log of N package updates (default 14,000), each with a
    distribution-sized PKGBUILD (about 2 KB) whose text is published, so every update also
    gets its diff page against the version before: `provenance.render` (pure), then the
    site written and switched in place (`provenance_site.write_site`);
(b) the source machine's status page with 2,000 open proposals, and the repo machine's
    with 2,000 sources waiting and 500 refused (`statuspages`).

repo-add has no counterpart for either (it publishes no provenance and no status), so there
is no ratio; the target is that the hourly provenance timer and a status page reload stay
far inside their period: (a) <= 60 s for 14,000 updates, (b) <= 1 s each.
Run by hand: `.venv/bin/python bench/pages_bench.py [--packages 14000]`.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from reposeal.enclave.provenance import render
from reposeal.enclave.provenance_site import write_site
from reposeal.statuspages import render_repo, render_source

BODY = "".join(f'  install -Dm644 file{i} "$pkgdir/usr/share/x/file{i}"\n' for i in range(40))


def pkgbuild(name: str, version: int) -> bytes:
    return (f"pkgname={name}\npkgver={version}.0\npkgrel=1\npkgdesc=\"the {name} package\"\n"
            f"arch=(x86_64)\nlicense=(GPL)\ndepends=(glibc)\nsource=({name}-{version}.tar.gz)\n"
            f"sha256sums=({hashlib.sha256(name.encode()).hexdigest()})\n"
            f"package() {{\n{BODY}}}\n").encode()  # fmt: skip


def provenance_log(n: int) -> tuple[list[dict[str, Any]], dict[str, bytes]]:
    """N updates: package i at version 1 in the first half of the entries, some at 2 after."""
    entries: list[dict[str, Any]] = []
    texts: dict[str, bytes] = {}
    fprs = [hashlib.sha1(f"k{i}".encode()).hexdigest().upper() for i in range(8)]
    for i in range(n):
        name, version = f"pkg{i % (n // 2 or 1):05d}", 1 + i // (n // 2 or 1)
        text = pkgbuild(name, version)
        digest = hashlib.sha256(text).hexdigest()
        texts[digest] = text
        entries.append({
            "entry": i + 1, "repo": "extra", "arch": "x86_64", "adopted_by": [], "removed": [],
            "packages": [{
                "name": name, "version": f"{version}.0-1", "sha256": "0" * 64,
                "approved_by": fprs[:2], "pkgbase": name, "pkgbuild_sha256": digest,
                "commits": ["a" * 40], "built_by": fprs[4:6], "moved_from": None,
            }],
        })  # fmt: skip
    return entries, texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packages", type=int, default=14_000)
    args = parser.parse_args()
    rows = []
    entries, texts = provenance_log(args.packages)
    names = {f: f"maintainer {f[:4]} <m@example.org>" for p in entries[:1]
             for f in p["packages"][0]["approved_by"] + p["packages"][0]["built_by"]}  # fmt: skip
    start = time.perf_counter()
    pages = render(entries, [], names, [], {}, texts)
    rendered = time.perf_counter() - start
    work = Path(tempfile.mkdtemp(prefix="reposeal-pages-bench-"))
    try:
        start = time.perf_counter()
        write_site(pages, work / "provenance")
        written = time.perf_counter() - start
    finally:
        shutil.rmtree(work, ignore_errors=True)
    size = sum(len(v) for v in pages.values())
    out = f"{len(pages):,} pages, {size / 1e6:.0f} MB"
    rows.append((f"(a) provenance render, {args.packages:,} updates", rendered, out,
                 "<= 60 s with the write"))  # fmt: skip
    rows.append(("(a) provenance site written and switched", written, "", ""))

    proposals = [{
        "pkgbase": f"pkg{i:05d}", "commit": "b" * 40, "author": "A" * 40,
        "approvals": {"extra": {"signers": ["A" * 40], "needed_more": 1,
                                "could_approve": ["B" * 40, "C" * 40]}},
        "jobs": [{"id": f"job-{i}", "state": "building", "built_by": ["builder0"],
                  "differences": []}],
    } for i in range(2000)]  # fmt: skip
    start = time.perf_counter()
    source_page = render_source(proposals, {})
    rows.append(("(b) source status, 2,000 proposals", time.perf_counter() - start,
                 f"{len(source_page) / 1e6:.1f} MB", "<= 1 s"))  # fmt: skip
    doc = {
        "waiting": [{"repo": "extra", "arch": "x86_64", "pkgbase": f"pkg{i:05d}",
                     "commit": "c" * 40, "missing": ["1 more approval", "2 builds"]}
                    for i in range(2000)],
        "parked": [{"repo": "extra", "arch": "x86_64", "pkgbase": f"bad{i}", "commit": "d" * 40,
                    "alone": True, "reasons": ["downgrade"]} for i in range(500)],
    }  # fmt: skip
    start = time.perf_counter()
    repo_page = render_repo(doc)
    rows.append(("(b) repo status, 2,000 waiting, 500 refused", time.perf_counter() - start,
                 f"{len(repo_page) / 1e6:.1f} MB", "<= 1 s"))  # fmt: skip

    print(f"| {'case':<48} | {'time':>8} | {'output':<22} | target |")
    print(f"|{'-' * 50}|{'-' * 10}:|{'-' * 24}|--------|")
    for case, seconds, out, target in rows:
        print(f"| {case:<48} | {seconds:7.2f}s | {out:<22} | {target} |")


if __name__ == "__main__":
    main()
