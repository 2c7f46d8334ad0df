"""`reposeal verify`: what pacman cannot check about a synced database.

pacman verifies a database's signature (and refuses an expired one). It cannot tell an old,
validly signed database replayed to it (rollback, freeze, mix-and-match of repositories)
from the current one, nor a signature that was never made public. The transparency log can:

1. the database's signature verifies with a trusted repository key and has not expired;
2. the log's checkpoint is signed by that key (``checkpoint.sig``) and by the log's note key
   (named by the log's genesis entry), and the published entries make exactly its tree;
3. the log extends the one seen last time (the checkpoint kept in the state folder): a log
   that forked from what this machine saw (split view) is refused;
4. the database is logged, it is the *latest* database logged for its repository and
   architecture, and this very signature is the one logged for it (or a logged refresh);
5. with a witness policy (C2SP tlog-policy, from the distribution, like the keyring): the
   checkpoint carries the quorum of valid witness cosignatures made within ``max_age``
   (default: the database signature's own validity). Witnesses cosign only checkpoints
   consistent with all they saw, so a fork (split view) shown to a first-time client, an old
   log prefix replayed with an old database, or a frozen mirror, is refused with no state.

The decisions (``check_*``) are pure; fetching and the state file are at the edges.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reposeal.alpm.limits import MAX_DB, MAX_SMALL
from reposeal.errors import ReposealError
from reposeal.openpgp.verify import Keyring, verify_detached
from reposeal.translog.checkpoint import Checkpoint
from reposeal.translog.merkle import leaf_hashes, root_of_leaves
from reposeal.translog.published import (
    Fetch,
    Log,
    VerifyError,
    check_witnessed,
    fetch_url,
    load_log,
)

if TYPE_CHECKING:
    from reposeal.translog.witnesspolicy import WitnessPolicy

__all__ = ["Log", "State", "Verified", "VerifyError", "check_consistent", "check_database",
           "check_expiry", "check_witnessed", "verify", "verify_offline"]  # fmt: skip

DEFAULT_MAX_AGE = 7 * 86400.0  # cosignature age accepted when the signature never expires


def signature_lifetime(signature: bytes) -> float | None:
    """How long the database signature was made to hold (expiry minus creation)."""
    import pysequoia

    try:
        sig = pysequoia.Sig.from_bytes(signature)
    except (RuntimeError, ValueError):
        return None
    if sig.expiration is None or sig.created is None:
        return None
    return float(sig.expiration.timestamp() - sig.created.timestamp())


def check_consistent(log: Log, seen: tuple[int, bytes] | None) -> None:
    """The log extends the one this machine saw last (size, root). Pure."""
    if seen is None:
        return
    size, root = seen
    if log.checkpoint.size < size:
        raise VerifyError(
            f"the log has {log.checkpoint.size} entries, fewer than the {size} seen before: "
            "rolled back, or another view of it"
        )
    if root_of_leaves(leaf_hashes(log.entries[:size])) != root:
        raise VerifyError(
            "the log is not the one seen before (its first entries differ): a fork, shown "
            "to this machine and not to others (split view)"
        )


@dataclass(frozen=True)
class Verified:
    repo: str
    arch: str
    db_sha256: str
    log_index: int
    log_size: int
    expires: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": True,
            "repo": self.repo,
            "arch": self.arch,
            "db_sha256": self.db_sha256,
            "log_index": self.log_index,
            "log_size": self.log_size,
            "expires": self.expires,
        }


def check_database(
    log: Log, name: str, db: bytes, signature: bytes, arch: str | None = None
) -> tuple[str, int]:
    """The database is logged, the latest for its repository/architecture, and this
    signature is logged for it; returns (arch, log index). Pure."""
    digest = hashlib.sha256(db).hexdigest()
    sig = base64.b64encode(signature).decode()
    found = None
    latest: dict[str, tuple[int, str]] = {}
    logged_sigs: set[str] = set()
    for i, doc in enumerate(log.docs):
        if doc.get("repo") != name or (arch is not None and doc.get("arch") != arch):
            continue
        if doc.get("type") == "db":
            latest[str(doc.get("arch"))] = (i, str(doc.get("db_sha256")))
            if doc.get("db_sha256") == digest:
                found = (str(doc.get("arch")), i)
        if doc.get("type") in ("db", "refresh") and doc.get("db_sha256") == digest:
            logged_sigs.add(str(doc.get("signature")))
    if found is None:
        raise VerifyError(
            f"this {name} database ({digest[:16]}…) is not in the transparency log: it was "
            "never signed in the open"
        )
    at, index = found
    newest, newest_sha = latest[at]
    if newest_sha != digest:
        raise VerifyError(
            f"this {name}/{at} database (log entry {index}) is not the latest: entry {newest} "
            f"logs {newest_sha[:16]}…; a mirror is replaying an old database (rollback or "
            "freeze)"
        )
    if sig not in logged_sigs:
        raise VerifyError(f"the signature on this {name} database was never logged")
    return at, index


def check_expiry(signature: bytes, now: float) -> float | None:
    """When the database signature expires; refused once it has. Pure (given ``now``)."""
    import pysequoia

    try:
        expires = pysequoia.Sig.from_bytes(signature).expiration
    except (RuntimeError, ValueError):
        raise VerifyError("the database signature cannot be read") from None
    if expires is not None and expires.timestamp() <= now:
        raise VerifyError(
            f"the database signature expired at {expires.isoformat()}: the mirror is stale "
            "or frozen"
        )
    return None if expires is None else expires.timestamp()


class State:
    """What this machine saw of each log: ``FOLDER/log-ORIGIN.json`` {size, root}."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _path(self, origin: str) -> Path:
        return self.folder / f"log-{hashlib.sha256(origin.encode()).hexdigest()[:16]}.json"

    def seen(self, origin: str) -> tuple[int, bytes] | None:
        path = self._path(origin)
        if not path.exists():
            return None
        doc = json.loads(path.read_bytes())
        return int(doc["size"]), base64.b64decode(doc["root"])

    def keep(self, cp: Checkpoint) -> None:
        from reposeal.fsio import atomic_write

        self.folder.mkdir(parents=True, exist_ok=True)
        doc = {"origin": cp.origin, "size": cp.size, "root": base64.b64encode(cp.root).decode()}
        atomic_write(self._path(cp.origin), json.dumps(doc).encode())


def _signed_database(
    repo_url: str, name: str, keyring: Keyring, fetch: Fetch, now: float
) -> tuple[bytes, bytes, float | None]:
    """NAME.db and its signature from ``repo_url``, the signature checked and not expired;
    with when it expires."""
    db = fetch(f"{repo_url}/{name}.db", MAX_DB)
    signature = fetch(f"{repo_url}/{name}.db.sig", MAX_SMALL)
    try:
        verify_detached(db, signature, keyring)
    except ReposealError as exc:
        raise VerifyError(f"the {name} database signature does not verify: {exc}") from None
    return db, signature, check_expiry(signature, now)


def verify(
    repo_url: str,
    name: str,
    keyring: Keyring,
    state: State,
    *,
    log_url: str | None = None,
    arch: str | None = None,
    fetch: Fetch = fetch_url,
    now: float | None = None,
    witnesses: WitnessPolicy | None = None,
    max_age: float | None = None,
) -> Verified:
    """Check the database NAME.db at ``repo_url`` (a pacman Server URL) against the log at
    ``log_url`` (default: ``log/`` at the mirror's root, three levels up from
    REPO/os/ARCH), and its cosignatures against ``witnesses``; remember the log's
    checkpoint only if everything holds."""
    repo_url = repo_url.rstrip("/")
    log_url = (log_url or repo_url.rsplit("/", 3)[0] + "/log").rstrip("/")
    now = time.time() if now is None else now
    db, signature, expires = _signed_database(repo_url, name, keyring, fetch, now)
    log = load_log(log_url, keyring, fetch)
    if witnesses is not None:
        age = max_age or signature_lifetime(signature) or DEFAULT_MAX_AGE
        check_witnessed(log.note, witnesses, now, age)
    check_consistent(log, state.seen(log.checkpoint.origin))
    at, index = check_database(log, name, db, signature, arch)
    state.keep(log.checkpoint)
    digest = hashlib.sha256(db).hexdigest()
    return Verified(name, at, digest, index, log.checkpoint.size, expires)


def verify_offline(
    repo_url: str,
    name: str,
    keyring: Keyring,
    witnesses: WitnessPolicy,
    *,
    arch: str,
    fetch: Fetch = fetch_url,
    now: float | None = None,
    max_age: float | None = None,
) -> Verified:
    """Check NAME.db at ``repo_url`` with the tlog-proof beside it, without the log's
    tiles: the signature holds, the proof's checkpoint carries the witnesses' quorum of
    fresh cosignatures (witnesses cosign only what the log's key signed), and its entry,
    included in that checkpoint, logs this very database for NAME/ARCH. Whether it is the
    latest is what the fresh cosignatures bound: a database replaced since is refused once
    they age out (use the full check for "latest" now)."""
    from reposeal.translog.proof import parse_proof

    repo_url = repo_url.rstrip("/")
    now = time.time() if now is None else now
    db, signature, expires = _signed_database(repo_url, name, keyring, fetch, now)
    try:
        proof = parse_proof(fetch(f"{repo_url}/{name}.db.tlog-proof", MAX_SMALL))
        cp = proof.checkpoint()
    except ReposealError as exc:
        raise VerifyError(f"the {name} database's tlog-proof: {exc.message}") from None
    age = max_age or signature_lifetime(signature) or DEFAULT_MAX_AGE
    check_witnessed(proof.note, witnesses, now, age)
    try:
        entry = json.loads(proof.extra)
    except ValueError:
        raise VerifyError("the proof's entry is not a log entry") from None
    digest = hashlib.sha256(db).hexdigest()
    wanted = {"type": "db", "repo": name, "arch": arch, "db_sha256": digest}
    if not isinstance(entry, dict) or any(entry.get(k) != v for k, v in wanted.items()):
        raise VerifyError(
            f"the proof's log entry is not this {name}/{arch} database ({digest[:16]}…)"
        )
    return Verified(name, arch, digest, proof.index, cp.size, expires)
