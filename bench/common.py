"""What the benchmarks share: a distribution-shaped repository, and an enclave that has
already signed it.

The repository looks like a distribution's: 14,000 packages, about 1.5 million file paths
(file counts log-normal, median about 33, a few with 10,000 and more), split packages, 3-18
dependencies each. Packages are made once and kept in a cache folder between runs.

``take_as_signed`` bootstraps an enclave home as if it had signed those packages and a
first database holding them all: the benchmarks measure one transition, not the bootstrap
of 14,000 packages' evidence. The databases are written by the enclave's own writer (the same
chunks, index and records a transition writes), and every package signature is a real one.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import random
import sys
import time
from dataclasses import replace
from pathlib import Path

from reposeal import canonical
from reposeal.alpm import chunked, compression
from reposeal.alpm.package import read_package
from reposeal.alpm.syncdb import Entry
from reposeal.alpm.synthetic import pkginfo_text, write_package
from reposeal.enclave.home import EnclaveHome
from reposeal.enclave.transition import record_of, record_to_json
from reposeal.policy.entries import ENTRY_VERSION
from tests.policy.world import World

N = 14_000
PKGBUILD = hashlib.sha256(b"PKGBUILD").hexdigest()
CACHE = Path("/tmp/reposeal-bench-cache")


def _file_counts(n: int, rng: random.Random) -> list[int]:
    """Log-normal file counts, median about 33, scaled to about 1.5 million in all."""
    counts = [max(1, int(rng.lognormvariate(3.5, 1.45))) for _ in range(n)]
    for i in rng.sample(range(n), max(1, n // 1000)):  # a few very large packages
        counts[i] = rng.randint(10_000, 30_000)
    scale = 1_500_000 * n / N / sum(counts)
    return [max(1, int(c * scale)) for c in counts]


def distro_packages(n: int = N, folder: Path | None = None) -> list[Path]:
    """``n`` distribution-shaped package files (made once, then taken from the cache)."""
    folder = folder or CACHE / f"distro-{n}"
    done = folder / ".complete"
    if done.exists():
        return [folder / line for line in done.read_text().splitlines()]
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(14_000)
    counts = _file_counts(n, rng)
    names: list[str] = []
    paths: list[Path] = []
    i = 0
    t = time.time()
    while i < n:
        base = f"pkg{i:05d}"
        split = 1 if rng.random() < 0.85 else rng.randint(2, 4)  # split packages
        for part in range(min(split, n - i)):
            name = base if part == 0 else f"{base}-part{part}"
            deps = rng.sample(names, min(len(names), rng.randint(3, 18)))
            files = {f"usr/share/{name}/d{k // 200}/f{k}": b"" for k in range(counts[i])}
            info = pkginfo_text(name, "1-1", "x86_64", depends=deps).replace(
                f"pkgbase = {name}".encode(), f"pkgbase = {base}".encode()
            )
            paths.append(
                write_package(
                    folder,
                    name,
                    "1-1",
                    "x86_64",
                    files=files,
                    pkginfo=info,
                    pkgbuild_sha256=PKGBUILD,
                )
            )
            names.append(name)
            i += 1
        if i % 1000 < split:
            print(f"  {i:,}/{n:,} packages ({time.time() - t:.0f} s)", file=sys.stderr)
    done.write_text("\n".join(p.name for p in paths))
    return paths


def take_as_signed(
    home: EnclaveHome, packages: list[Path], repo: str = "core", arch: str = "x86_64"
) -> dict[str, bytes]:
    """Log ``packages`` as signed by the enclave, and a first database of ``repo/arch``
    holding them all, written by the enclave's own writer. Returns the published files
    (databases, their signatures, the index) for a mirror."""
    key = home.key()
    kind = compression.GZIP
    entries, records, signatures = [], [], {}
    for path in packages:
        pkg = read_package(path)
        sig = base64.b64encode(key.sign_detached(io.BytesIO(path.read_bytes()))).decode()
        signatures[pkg.facts.sha256] = sig
        entry = Entry.from_package(replace(pkg.facts, pgpsig=sig), pkg.files)
        entries.append(entry)
        records.append(record_to_json(record_of(pkg, path.name), entry))
    chunks = chunked.make_chunks(entries, kind)
    db = chunked.assemble(chunks, "db", kind)
    files = chunked.assemble(chunks, "files", kind)
    index = json.dumps(
        chunked.index_document(chunks, kind, {"db": db, "files": files}),
        separators=(",", ":"),
        sort_keys=True,
    ).encode()
    listed = canonical.dumps(sorted(records, key=lambda r: str(r["name"])))
    digest = {k: hashlib.sha256(v).hexdigest() for k, v in
              (("db", db), ("files", files), ("index", index), ("records", listed))}  # fmt: skip
    for k, v in (("db", db), ("files", files), ("index", index)):
        (home.path / "dbs" / digest[k]).write_bytes(v)
    home.store_records(listed, digest["records"])
    packages_entry = {
        "v": ENTRY_VERSION, "type": "packages", "job": "bootstrap-packages",
        "request": "bootstrap", "repo": repo, "policy_version": 1,
        "records": digest["records"], "evidence": [], "by_sha256": signatures,
    }  # fmt: skip
    db_entry = {
        "v": ENTRY_VERSION, "type": "db", "job": "bootstrap", "request": "bootstrap",
        "repo": repo, "arch": arch, "parent": None, "policy_version": 1, "evidence": [],
        "db_sha256": digest["db"], "files_sha256": digest["files"],
        "index_sha256": digest["index"], "compression": ".gz", "records": digest["records"],
        "moved_from": {}, "removes": [], "replaced": [], "used_overrides": [],
        "used_removals": [], "admitted": {}, "parent_files": None, "parent_index": None,
        "signature": "", "files_signature": "",
    }  # fmt: skip
    with home.open_log() as log:
        for doc in (packages_entry, db_entry):
            home.append(log, canonical.dumps(doc), key)
    return {
        f"{repo}.db.tar.gz": db,
        f"{repo}.files.tar.gz": files,
        f"{repo}.db.tar.gz.sig": key.sign_detached(io.BytesIO(db)),
        f"{repo}.files.tar.gz.sig": key.sign_detached(io.BytesIO(files)),
        f"{repo}.index.json": index,
    }


def enclave_under_policy(work: Path, origin: str) -> tuple[World, EnclaveHome]:
    """A world of real keys, its policy signed by two admins, and an enclave home under it
    (the world's third admin holds the repository key)."""
    from reposeal.enclave.home import init_home
    from tests.policy.world import make_world

    (work / "keys").mkdir()
    world = make_world(work / "keys")
    policy = work / "policy.json"
    raw = world.policy().to_bytes()
    policy.write_bytes(raw)
    policy.with_name("policy.json.sig").write_bytes(b"".join(p.sign(raw) for p in world.admins[:2]))
    home = init_home(work / "enclave", f"soft:{world.admins[2].signer.path}", policy, origin)
    return world, home
