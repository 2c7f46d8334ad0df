"""`enclave dry-run`: would this database be signed, and if not, why? (No key, no log.)"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from reposeal.alpm.limits import DEFAULT_LIMITS
from reposeal.alpm.safeio import read_limited
from reposeal.enclave.home import EnclaveHome
from reposeal.enclave.sandbox import SandboxError, run_worker, sandbox_works
from reposeal.fsio import atomic_write
from reposeal.policy.decide import SigningState


def refuse_without_sandbox(insecure: bool) -> None:
    if insecure:
        print(
            "WARNING: --insecure-no-sandbox: the worker runs WITHOUT bubblewrap; hostile "
            "input could reach this machine",
            file=sys.stderr,
        )
    elif not sandbox_works():
        raise SandboxError(
            "bubblewrap cannot run here (installed? user namespaces allowed?); refusing to "
            "handle jobs without a sandbox. --insecure-no-sandbox overrides, for tests only"
        )


Job = tuple[Path, Path, dict[str, Path]]  # (job folder, output folder, read-only binds)


@contextmanager
def _job_folder(
    home: EnclaveHome, state: SigningState, spec: dict[str, Any], evidence: Path | None
) -> Iterator[tuple[Path, Path, Path]]:
    """job/ with job.json, state.json and the policy; out/; an evidence folder."""
    with tempfile.TemporaryDirectory(prefix="reposeal-job-") as tmp:
        job, out, empty = Path(tmp) / "job", Path(tmp) / "out", Path(tmp) / "empty"
        for d in (job, out, empty):
            d.mkdir()
        atomic_write(job / "job.json", json.dumps(spec).encode())
        atomic_write(job / "state.json", home.snapshot(state))
        for name in ("policy.json", "policy.json.sig"):
            shutil.copyfile(home.path / name, job / name)
        yield job, out, evidence or empty


@contextmanager
def prepared_job(
    home: EnclaveHome,
    state: SigningState,
    repo: str,
    arch: str,
    db_bytes: bytes,
    evidence: Path | None,
    packages: Path,
) -> Iterator[Job]:
    """A database-transition job for the worker (the caller read the database once)."""
    parent = state.last_db.get((repo, arch))
    spec: dict[str, Any] = {"kind": "db", "repo": repo, "arch": arch, "parent": parent}
    records = home.last_records(repo, arch) if parent is not None else None
    if records is not None:
        spec["parent_records"] = records
    with _job_folder(home, state, spec, evidence) as (job, out, ev):
        if records is not None:  # the parent's records as logged when it was signed
            atomic_write(job / "parent.records.json", home.read_records(records))
        elif parent is not None:
            shutil.copyfile(home.path / "dbs" / parent, job / "parent.db")
        atomic_write(job / "new.db", db_bytes)
        yield job, out, {"packages": packages, "evidence": ev}


@contextmanager
def prepared_packages_job(
    home: EnclaveHome, state: SigningState, repo: str, packages: Path, evidence: Path | None
) -> Iterator[Job]:
    """A package-signing job for the worker."""
    with _job_folder(home, state, {"kind": "packages", "repo": repo}, evidence) as (job, out, ev):
        yield job, out, {"packages": packages, "evidence": ev}


def dry_run(
    home: EnclaveHome,
    repo: str,
    arch: str,
    db: Path,
    *,
    evidence: Path | None = None,
    packages: Path | None = None,
    insecure_no_sandbox: bool = False,
) -> dict[str, Any]:
    refuse_without_sandbox(insecure_no_sandbox)
    state = home.load_state()
    db_bytes = read_limited(db, DEFAULT_LIMITS.max_db_bytes, "database")
    folder = packages or db.resolve().parent
    with prepared_job(home, state, repo, arch, db_bytes, evidence, folder) as (job, out, extra):
        worker = run_worker(job, out, extra=extra, insecure_no_sandbox=insecure_no_sandbox)
        return worker.decision
