"""The enclave's home: its configuration, policy, log and the databases it signed.

HOME/config.json        signer spec, log origin
HOME/note.key           the Ed25519 checkpoint key (0600)
HOME/policy.json(.sig)  a copy of the current policy and its admin signatures (for people)
HOME/policies/SHA256.json(.sig)  every policy the log names: the genesis entry the first,
                        each "policy" entry a rotation (the log says which one is current)
HOME/log.sqlite         the transparency log: the enclave's only memory
HOME/dbs/SHA256         the databases (sync and files) and chunk index it wrote and signed
                        last for each repository, and their parents (older ones are pruned)
HOME/records/SHA256.json  the records a log entry names (what a transition added, ...)
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reposeal.enclave.home_files import EnclaveStateError, HomeFiles
from reposeal.enclave.home_keys import HomeKeys
from reposeal.enclave.home_policies import HomePolicies
from reposeal.enclave.records import (
    fit_entry,
    genesis_entry,
    read_entry,
    replay,
)
from reposeal.errors import InputError, ReposealError
from reposeal.evidence.files import read_document
from reposeal.fsio import atomic_write
from reposeal.openpgp.signer import Signer
from reposeal.openpgp.spec import signer_from_spec, with_gnupghome
from reposeal.policy.document import Policy, verify_policy
from reposeal.policy.entries import LogEntry
from reposeal.policy.state import NameIndex, PackageRecord, SigningState, restrict
from reposeal.translog.checkpoint import Checkpoint, NoteSigner
from reposeal.translog.store import LogCorruptError, TransparencyLog

KEPT_CHECKPOINT_SIGNATURES = 16  # a log push lagging this many checkpoints asks again


@dataclass(frozen=True)
class SignedDatabases:
    """The last databases the enclave wrote and signed for one repository/architecture."""

    db: str  # sha256 of the sync database
    files: str  # of the files database
    index: str  # of their chunk index
    compression: str  # ".gz" or ".zst"
    log_index: int  # the entry that signed them


@dataclass
class EnclaveHome(HomePolicies, HomeKeys, HomeFiles):
    """An enclave home: its config, log and state here; its policies, keys and files in
    ``home_policies``, ``home_keys``, ``home_files``. ``gnupghome``: the GnuPG home of a
    gpg: key whose spec in the config names none (``--gnupghome``)."""

    path: Path
    gnupghome: Path | None = None
    # (log size, state) of the last replay in this process: a long-lived enclave verifies its
    # whole log once at start-up, then only what was appended since (and the checkpoint)
    _cache: tuple[int, SigningState] | None = field(default=None, init=False, repr=False)
    _jobs: dict[str, int] = field(default_factory=dict, init=False, repr=False)
    # (repo, arch) -> the last databases signed there
    _last_db: dict[tuple[str, str], SignedDatabases] = field(
        default_factory=dict, init=False, repr=False
    )
    _policy: tuple[bytes, Policy] | None = field(default=None, init=False, repr=False)
    _names: NameIndex = field(default_factory=NameIndex, init=False, repr=False)
    # one open log (and signers) for a long-lived enclave; reopened if the file is replaced
    _log: tuple[tuple[int, int], TransparencyLog] | None = field(
        default=None, init=False, repr=False
    )
    _signers: dict[str, Signer] = field(default_factory=dict, init=False, repr=False)
    _note: NoteSigner | None = field(default=None, init=False, repr=False)
    _config: tuple[tuple[int, int, int], dict[str, Any]] | None = field(
        default=None, init=False, repr=False
    )
    _note_seen: bytes = field(default=b"", init=False, repr=False)  # the last note verified
    _policy_sha: str = field(default="", init=False, repr=False)  # the policy in force
    _signer_fpr: str = field(default="", init=False, repr=False)  # the key the log names
    _sig_checked: bool = field(default=False, init=False, repr=False)  # checkpoint.sig, once

    @property
    def log_path(self) -> Path:
        return self.path / "log.sqlite"

    def config(self) -> dict[str, Any]:
        """config.json (read again only when the file changes)."""
        path = self.path / "config.json"
        try:
            st = path.stat()
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
            if self._config is None or self._config[0] != stamp:
                self._config = (stamp, json.loads(path.read_bytes()))
        except (OSError, ValueError):
            raise EnclaveStateError(
                "not an enclave home (run `reposeal enclave init`)", path=self.path
            ) from None
        return dict(self._config[1])

    @contextmanager
    def open_log(self) -> Iterator[TransparencyLog]:
        """The log, kept open between calls; it is re-read (size) on every call, and opened
        again if the file was replaced."""
        try:
            st = os.stat(self.log_path)
        except FileNotFoundError:
            raise EnclaveStateError("the log is missing", path=self.log_path) from None
        if self._log is None or self._log[0] != (st.st_dev, st.st_ino):
            self.close()
            self._log = ((st.st_dev, st.st_ino), TransparencyLog(self.log_path))
        else:
            self._log[1].refresh()
        yield self._log[1]

    def close(self) -> None:
        if self._log is not None:
            self._log[1].close()
            self._log = None

    def load_state(
        self, parsed: Mapping[str, dict[str, PackageRecord]] | None = None
    ) -> SigningState:
        """Verify the log and replay it; any tampering stops the enclave. The first call in a
        process re-hashes everything; later ones check the checkpointed root (O(log n)) and
        replay only the entries appended since. ``parsed``: records already in hand."""
        with self.open_log() as log:
            latest = log.latest_checkpoint()
            unchanged = latest is not None and latest[2] == self._note_seen
            if self._cache and self._cache[0] == log.size and unchanged:
                return self._cache[1]  # nothing appended since this process verified it all
            cached = self._cache if self._cache and self._cache[0] <= log.size else None
            try:
                log.verify(full=cached is None, since=cached[0] if cached else 0)
            except LogCorruptError as exc:
                raise EnclaveStateError(f"the log does not verify: {exc.message}") from None
            if log.size == 0:
                raise EnclaveStateError("the log is empty (no genesis entry)")
            genesis = json.loads(log.entry(0))
            if genesis.get("type") != "genesis":
                raise EnclaveStateError("the log does not start with a genesis entry")
            if latest is None or latest[0] != log.size:
                raise EnclaveStateError(
                    "the log has entries without a checkpoint (interrupted? rolled back?)"
                )
            from reposeal.translog.checkpoint import verify_checkpoint

            verify_checkpoint(latest[2], self.note_signer().verifier, self.config()["origin"])
            done, state = cached if cached is not None else (0, None)
            if cached is None:
                self._jobs, self._last_db = {}, {}
                self._names = NameIndex()
            fresh = []  # each entry read once (JSON, spilled fields, typed)
            for offset, raw in enumerate(log.entries(done, log.size)):
                try:
                    fresh.append(LogEntry.read(read_entry(raw, self.read_records)))
                except (ReposealError, ValueError) as exc:
                    raise EnclaveStateError(f"log entry {done + offset}: {exc}") from None
            try:
                state = replay(fresh, self.read_records, state, parsed, self._names)
            except (ReposealError, ValueError, KeyError, TypeError) as exc:
                raise EnclaveStateError(f"the log cannot be replayed: {exc}") from None
            for offset, e in enumerate(fresh):
                if e.signer is not None and e.type in ("genesis", "signer"):
                    self._signer_fpr = e.signer.upper()
                if e.policy_sha256 is not None and e.type in ("genesis", "policy"):
                    self._policy_sha = e.policy_sha256
                if e.job is not None:
                    self._jobs.setdefault(e.job, done + offset)
                if e.type == "db":
                    self._last_db[(str(e.repo), str(e.arch))] = SignedDatabases(
                        str(e.db_sha256), str(e.files_sha256), str(e.index_sha256),
                        str(e.compression), done + offset,
                    )  # fmt: skip
            self._cache, self._note_seen = (log.size, state), latest[2]
            return state

    def state_about(
        self,
        state: SigningState,
        names: Iterable[str],
        bases: Iterable[str] = (),
        shas: Iterable[str] = (),
    ) -> SigningState:
        """What ``state`` says about ``names`` (see ``policy.state.restrict``), fast for the
        state ``load_state`` returned last."""
        if self._cache is not None and self._cache[1] is state:
            return self._names.restrict(state, names, bases, shas)
        return restrict(state, names, bases, shas)

    def job_index(self, job_id: str) -> int | None:
        """The log index of the answer to ``job_id`` (after ``load_state``)."""
        return self._jobs.get(job_id)

    def check_anchor(self, note: bytes | None) -> None:
        """Refuse to go on when a checkpoint this enclave signed and published outside its
        disk (the repo machine's copy of the log, which only grows) is ahead of its log, or
        names another tree at the same size: its disk was rolled back (or forked). A note
        that is not ours proves nothing and is ignored."""
        from reposeal.translog.checkpoint import verify_checkpoint

        if note is None:
            return
        try:
            cp = verify_checkpoint(note, self.note_signer().verifier, self.config()["origin"])
        except ReposealError:
            return  # not signed by our note key: a claim, not a checkpoint of ours
        with self.open_log() as log:
            if cp.size > log.size:
                raise EnclaveStateError(
                    f"this enclave's log holds {log.size} entries, but it published a "
                    f"checkpoint of {cp.size} (the repo machine's copy of the log): its disk was "
                    "rolled back or restored from an old backup. Nothing will be signed; "
                    "rebuild the home from the mirrors with `reposeal enclave restore`"
                )
            if cp.size and log.root(cp.size) != cp.root:
                raise EnclaveStateError(
                    f"the checkpoint of {cp.size} entries this enclave published names another "
                    "tree than its log: its disk was rolled back and then signed on (a fork). "
                    "Nothing will be signed; rebuild the home with `reposeal enclave restore`"
                )

    def complete_checkpoint(self, signer: Signer) -> None:
        """If the last run died between appending an entry and checkpointing it, the entry is
        ours and durable: verify the log and checkpoint it now. Fewer entries than the last
        checkpoint (truncation, rollback) is never repaired."""
        with self.open_log() as log:
            latest = log.latest_checkpoint()
            if latest is not None and latest[0] < log.size:
                log.verify(full=True)
                self.checkpoint(log, signer)
            elif latest is not None and not self._sig_checked:
                self._repair_checkpoint_signature(latest[2], signer)
                self._sig_checked = True

    def _repair_checkpoint_signature(self, note: bytes, signer: Signer) -> None:
        """checkpoint.sig is written after the log commit without its own sync (it can be
        made again): once per process, make sure it signs the latest checkpoint."""
        from reposeal.openpgp.verify import Keyring, verify_detached

        path = self.path / "checkpoint.sig"
        keyring = Keyring.from_bytes(signer.certificate())
        try:
            verify_detached(note, path.read_bytes(), keyring)
            verify_detached(note, self.checkpoint_signature(note) or b"", keyring)
        except (OSError, ReposealError):
            atomic_write(path, self._keep_signature(note, signer))

    def checkpoint(self, log: TransparencyLog, signer: Signer) -> bytes:
        """Sign and store a checkpoint for the whole log (note + OpenPGP signature)."""
        note = self._note_for(log.size, log.root())
        signature = self._keep_signature(note, signer)
        log.save_checkpoint(log.size, log.root(), note)
        atomic_write(self.path / "checkpoint.sig", signature)
        return note

    def _keep_signature(self, note: bytes, signer: Signer) -> bytes:
        """The key's OpenPGP signature over a checkpoint note, kept under the note's hash
        (HOME/checkpoint-sigs/SHA256) before the checkpoint is committed: whoever sees a
        checkpoint finds its signature (the last few are kept)."""
        signature = signer.sign_detached(io.BytesIO(note))
        folder = self.path / "checkpoint-sigs"
        atomic_write(folder / hashlib.sha256(note).hexdigest(), signature, durable=False)
        kept = sorted((p for p in folder.iterdir() if not p.name.startswith(".")),
                      key=lambda p: p.stat().st_mtime_ns)  # fmt: skip
        for old in kept[:-KEPT_CHECKPOINT_SIGNATURES]:
            old.unlink(missing_ok=True)
        return signature

    def checkpoint_signature(self, note: bytes) -> bytes | None:
        """The signature kept for this very checkpoint note, if it is still kept."""
        try:
            return (self.path / "checkpoint-sigs" / hashlib.sha256(note).hexdigest()).read_bytes()
        except OSError:
            return None

    def checkpoint_note(self, log: TransparencyLog, size: int) -> bytes:
        """A signed note for the tree at ``size`` (a true statement about any size the log
        has had; the bridge's copy catches up in steps when it lags far behind)."""
        return self._note_for(size, log.root(size))

    def _note_for(self, size: int, root: bytes) -> bytes:
        cp = Checkpoint(self.config()["origin"], size, root)
        return self.note_signer().sign(cp.text()).encode()

    def append(self, log: TransparencyLog, entry: bytes, signer: Signer) -> bytes:
        """Append ``entry`` (its large fields spilled to a blob if it does not fit) and its
        checkpoint in one transaction; return the signed note."""
        entry = fit_entry(entry, self._store_blob)
        notes: list[bytes] = []
        signatures: list[bytes] = []

        def sign(size: int, root: bytes) -> bytes:
            notes.append(self._note_for(size, root))
            signatures.append(self._keep_signature(notes[-1], signer))  # before the commit
            return notes[-1]

        log.append([entry], checkpoint=sign)
        atomic_write(self.path / "checkpoint.sig", signatures[-1], durable=False)  # remade if lost
        return notes[-1]

    def last_databases(self, repo: str, arch: str) -> SignedDatabases | None:
        """The last databases signed for repo/arch (after ``load_state``)."""
        return self._last_db.get((repo, arch))

    def all_last_databases(self) -> dict[tuple[str, str], SignedDatabases]:
        return dict(self._last_db)

    def entry(self, log: TransparencyLog, index: int) -> LogEntry:
        """Log entry ``index`` (spilled fields back in place), as a typed record."""
        return LogEntry.read(read_entry(log.entry(index), self.read_records))


def init_home(
    path: Path, signer_spec: str, policy_path: Path, origin: str, gnupghome: Path | None = None
) -> EnclaveHome:
    """Create an enclave home: check the policy and key, write the genesis log entry."""
    if path.exists() and any(path.iterdir()):
        raise InputError("refusing to initialise a non-empty folder", path=path)
    raw, sigs = read_document(policy_path)
    verify_policy(raw, sigs)  # the first policy needs its own admin threshold
    signer_spec = with_gnupghome(signer_spec, gnupghome)  # the config keeps the whole spec
    signer = signer_from_spec(signer_spec)
    fingerprint = signer.fingerprint
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    home = EnclaveHome(path)
    atomic_write(
        path / "config.json",
        json.dumps({"signer": signer_spec, "origin": origin}, indent=2).encode(),
    )
    note = NoteSigner.generate(origin.replace(" ", "_"))
    atomic_write(path / "note.key", note.encode().encode())
    os.chmod(path / "note.key", 0o600)
    shutil.copyfile(policy_path, path / "policy.json")
    atomic_write(path / "policy.json.sig", sigs)
    home.store_policy(raw, sigs)
    (path / "dbs").mkdir()
    atomic_write(path / "repo-key.pgp", signer.certificate())  # for anyone auditing
    with TransparencyLog(home.log_path) as log:
        log.append(
            [genesis_entry(hashlib.sha256(raw).hexdigest(), fingerprint, note.verifier.encode())]
        )
        home.checkpoint(log, signer)
    return home
