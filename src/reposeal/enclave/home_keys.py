"""The keys of an enclave home: the repository key its config names (checked against the key
the log names and the policy in force before it signs), key switches (log entries), and the
note key that signs checkpoints. Part of ``EnclaveHome``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping
    from contextlib import AbstractContextManager

    from reposeal.policy.document import Policy
    from reposeal.policy.state import PackageRecord, SigningState
    from reposeal.translog.store import TransparencyLog

from reposeal import canonical
from reposeal.enclave.home_files import EnclaveStateError
from reposeal.evidence.files import read_document
from reposeal.fsio import atomic_write
from reposeal.openpgp.signer import Signer
from reposeal.openpgp.spec import signer_from_spec, with_gnupghome
from reposeal.policy.document import verify_policy
from reposeal.policy.entries import LogEntry
from reposeal.translog.checkpoint import NoteSigner


class HomeKeys:
    """Key handling for ``EnclaveHome``."""

    path: Path
    gnupghome: Path | None
    _signers: dict[str, Signer]
    _note: NoteSigner | None
    _config: tuple[tuple[int, int, int], dict[str, Any]] | None
    _signer_fpr: str

    if TYPE_CHECKING:  # given by EnclaveHome

        def load_state(
            self, parsed: Mapping[str, dict[str, PackageRecord]] | None = None
        ) -> SigningState: ...
        def config(self) -> dict[str, Any]: ...
        def policy(self) -> Policy: ...
        def open_log(self) -> AbstractContextManager[TransparencyLog]: ...
        def append(self, log: TransparencyLog, entry: bytes, signer: Signer) -> bytes: ...

    def key(self) -> Signer:
        """The configured key, unchecked: only for re-signing a checkpoint after a crash
        (before the log can be replayed); everything else uses ``signer``. Its spec is the
        config's, with the home's ``gnupghome`` for a gpg: key that names none."""
        spec = with_gnupghome(str(self.config()["signer"]), self.gnupghome)
        if spec not in self._signers:
            self._signers[spec] = signer_from_spec(spec)
        return self._signers[spec]

    def signer(self) -> Signer:
        """The repository key, if it is the one the log names and the policy in force lets
        it sign (a key the policy revoked, or never named, signs nothing)."""
        signer = self.key()
        self.load_state()
        if signer.fingerprint.upper() != self._signer_fpr:
            raise EnclaveStateError(
                f"the configured key {signer.fingerprint} is not the one the log names "
                f"({self._signer_fpr}); switch keys with `reposeal enclave signer`"
            )
        if not self.policy().may_sign(signer.fingerprint):
            raise EnclaveStateError(
                f"the policy in force does not name key {signer.fingerprint} as a current or "
                "next repository key: it signs nothing"
            )
        return signer

    def signer_fingerprint(self) -> str:
        """The repository key the log names (genesis, or the last switch)."""
        self.load_state()
        return self._signer_fpr

    def switch_signer(self, spec: str) -> int:
        """Make the key ``spec`` names the repository key: the policy in force must name it
        (current or next); the switch is a log entry; later signatures are the new key's.
        Returns the entry's index."""
        from reposeal.policy.keys import switch_problems

        spec = with_gnupghome(spec, self.gnupghome)  # the config holds the whole spec
        new = signer_from_spec(spec)
        policy = self.policy()
        self.load_state()
        named = self._named_since(new.fingerprint.upper())
        problems = switch_problems(policy, new.fingerprint, self._signer_fpr, named, time.time())
        if problems:
            raise EnclaveStateError(problems[0])
        entry = canonical.dumps(
            LogEntry(
                "signer",
                signer=new.fingerprint.upper(),
                policy_version=policy.version,
                time=int(time.time()),
            ).to_json()
        )
        certs = (self.path / "repo-key.pgp").read_bytes() + new.certificate()
        atomic_write(self.path / "repo-key.pgp", certs)  # auditors check old and new
        # config first: a crash before the entry leaves a mismatch that running this again
        # repairs; the other order could leave a log naming a key nobody configured
        config = self.config() | {"signer": spec}
        atomic_write(self.path / "config.json", json.dumps(config, indent=2).encode())
        self._config = None
        self._signers.clear()
        with self.open_log() as log:
            index = log.size
            self.append(log, entry, new)
        return index

    def retired_since(self, fingerprint: str) -> float | None:
        """When the log switched away from the key ``fingerprint`` (None: it never signed
        here, or still does)."""
        current, since = None, None
        with self.open_log() as log:
            for i in range(log.size):
                doc = json.loads(log.entry(i))
                if doc.get("type") in ("genesis", "signer"):
                    new = str(doc["signer"]).upper()
                    if current == fingerprint.upper() and new != current:
                        since = float(doc.get("time", 0))
                    elif new == fingerprint.upper():
                        since = None
                    current = new
        return None if current == fingerprint.upper() else since

    def _named_since(self, fingerprint: str) -> float:
        """When the policies in force began naming ``fingerprint`` without a break (the time
        of the policy entry; entries from before times were logged count as long ago)."""
        since = None
        with self.open_log() as log:
            for i in range(log.size):
                doc = json.loads(log.entry(i))
                if doc.get("type") not in ("genesis", "policy"):
                    continue
                raw, sigs = read_document(self.path / "policies" / f"{doc['policy_sha256']}.json")
                if verify_policy(raw, sigs).may_sign(fingerprint):
                    since = float(doc.get("time", 0)) if since is None else since
                else:
                    since = None
        return time.time() if since is None else since

    def note_signer(self) -> NoteSigner:
        if self._note is None:
            self._note = NoteSigner.decode((self.path / "note.key").read_text())
        return self._note
