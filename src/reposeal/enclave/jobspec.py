"""What the worker of one job gets: its spec, the enclave's own blobs, the folders it may
read, and a view of the signing state. (``enclave dry-run`` runs one without a key.)"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from reposeal.enclave.home import EnclaveHome, SignedDatabases
from reposeal.enclave.records import state_to_json
from reposeal.enclave.sandbox import SandboxError, WorkerPool, WorkerResult, sandbox_works
from reposeal.enclave.workspec import WorkSpec
from reposeal.policy.state import SigningState

if TYPE_CHECKING:
    from reposeal.enclave.proposal import Proposal


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

    spec: WorkSpec
    blobs: dict[str, bytes]
    folders: dict[str, Path]
    state: SigningState

    def run(
        self, home: EnclaveHome, pool: WorkerPool, meanwhile: Callable[[], object] | None = None
    ) -> WorkerResult:
        """The worker's result; ``meanwhile`` runs while the worker starts deciding."""

        def state_for(names: list[str], bases: list[str], shas: list[str]) -> bytes:
            return state_to_json(home.state_about(self.state, names, bases, shas))

        policy = home.policy_document()
        return pool.run(self.spec, self.blobs, self.folders, policy, state_for, meanwhile)


def _folders(packages: Path, evidence: Path | None) -> dict[str, Path]:
    return {"packages": packages, **({"evidence": evidence} if evidence is not None else {})}


def transition_job(
    home: EnclaveHome,
    state: SigningState,
    proposal: Proposal,
    last: SignedDatabases | None,
    packages: Path,
    evidence: Path | None,
    keyring: bytes | None = None,
) -> WorkerJob:
    """A transition for the worker: the proposal, and the databases the enclave signed last
    for that repository (its own bytes, by the hashes its log names); an adoption starts
    from none, with the packagers' keyring if it has one."""
    spec = WorkSpec(
        "adopt" if proposal.adopt else "transition",
        proposal.repo,
        proposal.arch,
        add=tuple(sorted(proposal.add)),
        moves=tuple(sorted(proposal.moves)),
        remove=tuple(sorted(proposal.remove)),
        compression=proposal.compression,
    )
    blobs: dict[str, bytes] = {"keyring": keyring} if keyring else {}
    if last is not None and not proposal.adopt:
        spec = replace(spec, parent=last.db, parent_files=last.files, parent_index=last.index)
        blobs = {
            "parent.db": home.read_db(last.db),
            "parent.files": home.read_db(last.files),
            "parent.index": home.read_db(last.index),
        }
    return WorkerJob(spec, blobs, _folders(packages, evidence), state)


def packages_job(
    home: EnclaveHome, state: SigningState, repo: str, packages: Path, evidence: Path | None
) -> WorkerJob:
    """A package-signing job for the worker."""
    return WorkerJob(WorkSpec("packages", repo), {}, _folders(packages, evidence), state)
