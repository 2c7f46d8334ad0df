"""`reposeal enclave restore`: rebuild an enclave home from the log its mirrors carry.

The mirrors hold every entry (C2SP tiles), the checkpoint signed by the repository key and
the log's note key, and every file the entries name (records, statements, policies). With
the signing key (an HSM token, or the key file from the offline backup) and the note key
from the backup, the home is rebuilt and checked before it can sign anything: the
checkpoint must be signed by this very key, the entries must make its tree, each file must
match the hash its entry names, and the rebuilt log is then verified and replayed in full.
When the policy names witnesses, the mirror's checkpoint must carry their quorum, and the
newest checkpoint each witness cosigned (asked directly) is the least the mirror's log may
hold: a stale or forked mirror does not make an enclave that signs from an old state.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from reposeal.alpm.limits import MAX_DB, MAX_PKGBUILD_TEXT
from reposeal.enclave.home import EnclaveHome
from reposeal.enclave.records import named_files
from reposeal.errors import InputError, ReposealError, VerificationError
from reposeal.fsio import atomic_write
from reposeal.openpgp.spec import signer_from_spec
from reposeal.openpgp.verify import Keyring
from reposeal.policy.document import Policy, parse_policy
from reposeal.protocol.logfiles import named_digest
from reposeal.translog.checkpoint import NoteSigner
from reposeal.translog.published import Fetch, Log, VerifyError, fetch_url, load_log
from reposeal.translog.store import TransparencyLog


class RestoreError(VerificationError):
    """What the mirrors hold does not rebuild this enclave; nothing usable was written."""


def fetch_copy(
    dest: Path,
    log_url: str,
    keyring: Keyring,
    fetch: Fetch = fetch_url,
    log: Log | None = None,
) -> tuple[Log, str | None]:
    """Write the log at ``log_url`` (checked against ``keyring``, unless the caller has
    ``log`` loaded and checked already) and every file its entries name into ``dest``, as
    an enclave home holds them: enough for `enclave audit`. Returns the log and the policy
    in force."""
    if dest.exists() and any(dest.iterdir()):
        raise InputError("refusing to write into a non-empty folder", path=dest)
    log = log or load_log(log_url.rstrip("/"), keyring, fetch)
    files: dict[str, bytes] = {}

    def get(name: str) -> bytes:
        if name not in files:
            text = name.startswith("pkgbuilds/")
            data = fetch(f"{log_url.rstrip('/')}/{name}", MAX_PKGBUILD_TEXT if text else MAX_DB)
            digest = named_digest(name)
            if digest is not None and hashlib.sha256(data).hexdigest() != digest:
                raise RestoreError(f"{name} on the mirror does not match its hash")
            files[name] = data
        return files[name]

    policy = None
    for raw, doc in zip(log.entries, log.docs, strict=True):
        for name in named_files(raw, lambda d: get(f"records/{d}.json")):
            if name.startswith("pkgbuilds/"):  # a text the replay does not need: may be gone
                with contextlib.suppress(VerifyError):
                    get(name)
                continue
            get(name)
        if doc.get("type") in ("genesis", "policy") and isinstance(doc.get("policy_sha256"), str):
            policy = doc["policy_sha256"]
    dest.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(dest, 0o700)
    (dest / "dbs").mkdir(exist_ok=True)
    for name, data in files.items():
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        atomic_write(dest / name, data)
    if policy is not None:
        atomic_write(dest / "policy.json", files[f"policies/{policy}.json"])
        atomic_write(dest / "policy.json.sig", files[f"policies/{policy}.json.sig"])
    atomic_write(dest / "repo-key.pgp", b"".join(bytes(c) for c in keyring.certs))
    cp = log.checkpoint
    with TransparencyLog(dest / "log.sqlite") as rebuilt:

        def same(size: int, root: bytes) -> bytes:
            if (size, root) != (cp.size, cp.root):
                raise RestoreError("the rebuilt log is not the checkpoint's tree")
            return log.note

        rebuilt.append(log.entries, checkpoint=same)
    return log, policy


@contextlib.contextmanager
def scratch_copy(log_url: str, keyring: Keyring, scratch: Path) -> Iterator[Path]:
    """An auditor's copy of the log at ``log_url`` (``fetch_copy``) in a fresh folder under
    ``scratch``, removed when the caller is done with it (the rebuild rehearsal, the
    provenance pages)."""
    scratch.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=".log-copy-", dir=scratch))
    try:
        fetch_copy(folder / "copy", log_url, keyring)
        yield folder / "copy"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def latest_databases(dest: Path, log_url: str, log: Log, fetch: Fetch = fetch_url) -> int:
    """Put the latest databases (and chunk index) the log names for each repository into
    ``dest/dbs``, from the mirror the log sits in (MIRROR/REPO/os/ARCH/): the enclave's next
    transitions start from them. Each must match the hash its entry names. Returns how many
    repositories were found."""
    base = log_url.rstrip("/").rsplit("/", 1)[0]
    last: dict[tuple[str, str], dict[str, object]] = {}
    for doc in log.docs:
        if doc.get("type") == "db":
            last[(str(doc["repo"]), str(doc["arch"]))] = doc
    for (repo, arch), doc in sorted(last.items()):
        folder = f"{base}/{repo}/os/{arch}"
        ext = str(doc["compression"])
        for name, key in (
            (f"{repo}.db.tar{ext}", "db_sha256"),
            (f"{repo}.files.tar{ext}", "files_sha256"),
            (f"{repo}.current/{repo}.index.json", "index_sha256"),
        ):
            digest = str(doc[key])
            try:
                data = fetch(f"{folder}/{name}", MAX_DB)
            except VerificationError as exc:
                raise RestoreError(f"{repo}/{arch}: {name} cannot be fetched ({exc})") from None
            if hashlib.sha256(data).hexdigest() != digest:
                raise RestoreError(
                    f"{repo}/{arch}: the mirror's {name} is not the one the log names last"
                )
            atomic_write(dest / "dbs" / digest, data)
    return len(last)


def check_current(log: Log, policy: Policy, fetch: Fetch = fetch_url) -> None:
    """With witnesses in the policy: the log carries their quorum, and is not behind (nor
    beside) the newest checkpoint of this log any witness cosigned."""
    import math

    from reposeal.translog.checkpoint import Checkpoint, open_note
    from reposeal.translog.cosignature import cosignatures
    from reposeal.translog.merkle import leaf_hash, root_of_leaves
    from reposeal.translog.published import VerifyError, check_witnessed

    if not policy.witnesses:
        return
    witnesses = policy.witness_policy()
    try:
        check_witnessed(log.note, witnesses, time.time(), math.inf)  # any age, none ahead
    except VerifyError as exc:
        raise RestoreError(f"the mirror's log: {exc.message}") from None
    origin = hashlib.sha256(log.checkpoint.origin.encode()).hexdigest()
    answered = []
    for w in witnesses.witnesses:
        try:
            note = fetch(f"{(w.url or '').rstrip('/')}/{origin}/checkpoint", 1 << 20)
            cp = Checkpoint.parse(open_note(note, log.verifier))
            if w.key.name not in cosignatures(note, [w.key]):
                continue
        except ReposealError:
            continue  # down, or nothing of ours it can prove: it does not count
        answered.append(w.name)
        if cp.size > log.checkpoint.size:
            raise RestoreError(
                f"witness {w.name} cosigned a checkpoint of {cp.size} entries, the mirror's log "
                f"has {log.checkpoint.size}: the mirror is stale; restore from a current one"
            )
        if root_of_leaves([leaf_hash(e) for e in log.entries[: cp.size]]) != cp.root:
            raise RestoreError(f"the mirror's log is a fork of what witness {w.name} cosigned")
    if not witnesses.satisfied(w.key.name for w in witnesses.witnesses if w.name in answered):
        raise RestoreError(
            f"only {', '.join(answered) or 'no witness'} answered: the quorum is needed to "
            "know the mirror's log is the newest (are the witnesses reachable from here?)"
        )


def restore(
    home: Path,
    log_url: str,
    signer_spec: str,
    note_key: Path,
    *,
    gnupghome: Path | None = None,
    fetch: Fetch = fetch_url,
) -> EnclaveHome:
    """A working enclave home from the mirrors, for this signing key and note key."""
    signer = signer_from_spec(signer_spec, gnupghome)
    cert = signer.certificate()
    note = NoteSigner.decode(note_key.read_text())
    log = load_log(log_url.rstrip("/"), Keyring.from_bytes(cert), fetch)
    genesis = log.docs[0]
    named = [d["signer"] for d in log.docs if d.get("type") in ("genesis", "signer")][-1]
    if str(named).upper() != signer.fingerprint.upper():
        raise RestoreError(f"the log names key {named} as the repository key, not this one")
    if note.verifier.encode() != genesis.get("note_verifier"):
        raise RestoreError("the note key is not the one the log's genesis names")
    log, _ = fetch_copy(home, log_url, Keyring.from_bytes(cert), fetch, log)
    try:
        check_current(log, parse_policy((home / "policy.json").read_bytes()), fetch)
    except RestoreError:
        shutil.rmtree(home, ignore_errors=True)  # a folder we made: nothing usable stays
        raise
    latest_databases(home, log_url, log, fetch)
    config = {"signer": signer_spec, "origin": log.checkpoint.origin}
    atomic_write(home / "config.json", json.dumps(config, indent=2).encode())
    atomic_write(home / "note.key", note_key.read_bytes())
    os.chmod(home / "note.key", 0o600)
    atomic_write(home / "repo-key.pgp", cert)
    restored = EnclaveHome(home)
    restored.load_state()  # the whole log verified and replayed, every file it names read
    restored.complete_checkpoint(signer)  # checkpoint.sig for the restored checkpoint
    return restored
