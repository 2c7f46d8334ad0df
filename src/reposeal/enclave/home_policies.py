"""The policies an enclave home keeps (HOME/policies/SHA256.json and .sig, every one the log
names) and the one in force: the last the log names, verified again only when its bytes
change. Part of ``EnclaveHome``."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

    from reposeal.policy.state import PackageRecord, SigningState

from reposeal.enclave.home_files import EnclaveStateError
from reposeal.errors import ReposealError
from reposeal.evidence.files import read_document
from reposeal.fsio import write_all
from reposeal.policy.document import Policy, verify_policy


class HomePolicies:
    """Policy storage for ``EnclaveHome``."""

    path: Path
    _policy: tuple[bytes, Policy] | None
    _policy_sha: str

    if TYPE_CHECKING:  # given by EnclaveHome

        def load_state(
            self, parsed: Mapping[str, dict[str, PackageRecord]] | None = None
        ) -> SigningState: ...

    def policy_sha256(self) -> str:
        """The sha256 of the policy in force: the last one the log names."""
        if not self._policy_sha:
            self.load_state()
        return self._policy_sha

    def policy_document(self) -> tuple[bytes, bytes]:
        """The current policy's (document, admin signatures), as the log names it."""
        digest = self.policy_sha256()
        for doc in (self.path / "policies" / f"{digest}.json", self.path / "policy.json"):
            try:
                raw, sigs = read_document(doc)
            except ReposealError:
                continue
            if hashlib.sha256(raw).hexdigest() == digest:
                return raw, sigs
        raise EnclaveStateError(f"the policy the log names ({digest[:16]}…) is missing")

    def store_policy(self, raw: bytes, sigs: bytes) -> str:
        """Keep a policy by its hash (durable), before a log entry names it."""
        digest = hashlib.sha256(raw).hexdigest()
        folder = self.path / "policies"
        write_all({folder / f"{digest}.json": raw, folder / f"{digest}.json.sig": sigs})
        return digest

    def policy(self) -> Policy:
        """The current policy, verified (again only when its bytes change)."""
        raw, sigs = self.policy_document()
        key = hashlib.sha256(hashlib.sha256(raw).digest() + sigs).digest()
        if self._policy is None or self._policy[0] != key:
            self._policy = (key, verify_policy(raw, sigs))
        return self._policy[1]
