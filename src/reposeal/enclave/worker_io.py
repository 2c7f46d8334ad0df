"""What a sandboxed worker sees of its job, and the evidence it verifies from it.

A worker gets descriptors, never paths (see ``zygote``): the job's own blobs ("job"), and
the package and evidence files it asks for by plain name. It holds no key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from typing import BinaryIO, Protocol

from reposeal.alpm.limits import (
    DEFAULT_LIMITS,
    MAX_EVIDENCE_BYTES,
    MAX_EVIDENCE_FILES,
    MAX_SIG_FILE_BYTES,
    MAX_STATEMENT_BYTES,
)
from reposeal.enclave.workspec import WorkSpec
from reposeal.errors import ReposealError
from reposeal.evidence.quorum import Signed, load_signed
from reposeal.evidence.statements import (
    ROLE_OF,
    from_bytes,
)
from reposeal.policy.decide import Evidence
from reposeal.policy.document import Policy
from reposeal.policy.state import SigningState

EVIDENCE_KINDS = ("approval", "build", "removal", "override", "adoption")  # what it decides on


class JobInput(Protocol):
    """What a worker may see of its job (folders: "job", "packages", "evidence")."""

    spec: WorkSpec
    policy: Policy

    def read(self, folder: str, name: str, limit: int) -> bytes | None:
        """The whole file, or None if it is not there; more than ``limit`` bytes is an error."""
        ...

    def open(self, folder: str, name: str) -> BinaryIO | None: ...

    def names(self, folder: str) -> list[str]: ...

    def state(
        self, names: Collection[str], bases: Collection[str] = (), shas: Collection[str] = ()
    ) -> SigningState:
        """What the enclave has signed, restricted to ``names`` (see ``policy.state.restrict``)."""
        ...


def blob(job: JobInput, name: str, limit: int = DEFAULT_LIMITS.max_db_bytes) -> bytes:
    data = job.read("job", name, limit)
    if data is None:
        raise ReposealError(f"the job lacks {name}")
    return data


def evidence_of(job: JobInput) -> tuple[Evidence, list[str], dict[str, list[str]]]:
    """Verified evidence, what was ignored and why, and for each used statement (by its
    sha256) the sha256 of each signature file it came with: the log entry names exactly the
    bytes the decision rested on. The job's size is checked before any signature is
    verified."""
    policy = job.policy
    kinds: dict[str, list[Signed]] = {k: [] for k in EVIDENCE_KINDS}
    ignored: list[str] = []
    used: dict[str, list[str]] = {}
    names = sorted(n for n in job.names("evidence") if n.endswith(".json"))
    if len(names) > MAX_EVIDENCE_FILES:
        raise ReposealError(
            f"a job carries at most {MAX_EVIDENCE_FILES} statements, this one {len(names)}"
        )
    budget = MAX_EVIDENCE_BYTES
    for name in names:
        try:
            raw = job.read("evidence", name, MAX_STATEMENT_BYTES)
            if raw is None:
                continue
            sigs = job.read("evidence", name + ".sig", MAX_SIG_FILE_BYTES) or b""
            budget -= len(raw) + len(sigs)
            if budget < 0:
                raise ReposealError(
                    f"a job's statements and signatures hold at most {MAX_EVIDENCE_BYTES} bytes"
                )
            kind = from_bytes(raw).kind
            if kind not in kinds:
                ignored.append(f"{name}: a {kind} statement is not evidence for the enclave")
                continue
            kinds[kind].append(load_signed(raw, sigs, policy.keyrings[ROLE_OF[kind]]))
            signed = used.setdefault(hashlib.sha256(raw).hexdigest(), [])
            signed.append(hashlib.sha256(sigs).hexdigest())
        except ReposealError as exc:
            ignored.append(f"{name}: {exc.message}")
    evidence = Evidence(
        kinds["approval"], kinds["build"], kinds["removal"], kinds["override"], kinds["adoption"]
    )
    return evidence, ignored, used
