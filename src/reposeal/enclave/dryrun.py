"""`enclave dry-run`: would this database be signed, and if not, why? (No key, no log.)"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reposeal.alpm.limits import DEFAULT_LIMITS
from reposeal.alpm.safeio import read_limited
from reposeal.enclave.home import EnclaveHome
from reposeal.enclave.records import state_to_json
from reposeal.enclave.sandbox import SandboxError, WorkerPool, WorkerResult, sandbox_works
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


@dataclass(frozen=True)
class WorkerJob:
    """What the worker of one job gets: its spec, its own blobs, the folders it may read."""

    spec: dict[str, Any]
    blobs: dict[str, bytes]
    folders: dict[str, Path]
    state: SigningState

    def run(
        self, home: EnclaveHome, pool: WorkerPool, meanwhile: Callable[[], object] | None = None
    ) -> WorkerResult:
        """The worker's result; ``meanwhile`` runs while the worker starts deciding."""

        def state_for(names: list[str]) -> bytes:
            return state_to_json(home.state_about(self.state, names))

        policy = home.policy_document()
        return pool.run(self.spec, self.blobs, self.folders, policy, state_for, meanwhile)


def _folders(packages: Path, evidence: Path | None) -> dict[str, Path]:
    return {"packages": packages, **({"evidence": evidence} if evidence is not None else {})}


def db_job(
    home: EnclaveHome,
    state: SigningState,
    repo: str,
    arch: str,
    db_bytes: bytes,
    evidence: Path | None,
    packages: Path,
    files_bytes: bytes | None = None,
) -> WorkerJob:
    """A database-transition job for the worker (the caller read the database once, and
    the files database, when it is to be signed too)."""
    parent = state.last_db.get((repo, arch))
    spec: dict[str, Any] = {"kind": "db", "repo": repo, "arch": arch, "parent": parent}
    blobs = {"new.db": db_bytes}
    if files_bytes is not None:
        blobs["new.files"] = files_bytes
    logged = home.last_records(repo, arch) if parent is not None else None
    if logged is not None:  # the parent's records (and chunk map) as logged when signed
        spec["parent_records"], spec["parent_chunks"] = logged
        blobs["parent.records.json"] = home.read_records(logged[0])
        if logged[1] is not None:
            blobs["parent.chunks.json"] = home.read_records(logged[1])
    elif parent is not None:
        blobs["parent.db"] = (home.path / "dbs" / parent).read_bytes()
    return WorkerJob(spec, blobs, _folders(packages, evidence), state)


def packages_job(
    home: EnclaveHome, state: SigningState, repo: str, packages: Path, evidence: Path | None
) -> WorkerJob:
    """A package-signing job for the worker."""
    spec = {"kind": "packages", "repo": repo}
    return WorkerJob(spec, {}, _folders(packages, evidence), state)


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
    job = db_job(home, state, repo, arch, db_bytes, evidence, folder)
    with WorkerPool(insecure_no_sandbox=insecure_no_sandbox, one_shot=True) as pool:
        return job.run(home, pool).decision
