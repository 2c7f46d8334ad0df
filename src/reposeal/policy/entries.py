"""The log's entries that change the signing state, as typed records, and the one ``apply``.

The enclave's replay at start-up, ``enclave audit`` and a rebuilt home all go through
``apply``: there is one way for a signature to change what the enclave will sign next.
Entries are canonical JSON in the log; each carries a version, checked on read, so a log
written by another version of reposeal is refused rather than misread. Pure, no I/O: the
records an entry names by hash are handed in by the caller.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from reposeal.alpm.vercmp import vercmp
from reposeal.errors import ReposealError
from reposeal.policy.state import PackageRecord, SigningState

ENTRY_VERSION = 2
STATE_TYPES = ("db", "packages")  # entries that change the signing state


class EntryError(ReposealError):
    """A log entry that is not of the form this version of reposeal writes."""


def check_version(doc: Mapping[str, Any]) -> None:
    if doc.get("v") != ENTRY_VERSION:
        raise EntryError(
            f"log entry of version {doc.get('v')!r}; this reposeal reads version "
            f"{ENTRY_VERSION} only"
        )


ENTRY_TYPES = ("genesis", "policy", "signer", "db", "packages", "refresh", "refusal")


@dataclass(frozen=True)
class LogEntry:
    """Any log entry, as its readers take it (the replay, the enclave's answers to a
    retried job, the pruning of old databases): its kind and the fields around the state
    change, each of its type, the version checked. The state change itself is ``parse``'s."""

    type: str
    job: str | None = None
    request: str | None = None  # the hash of what the job asked for
    repo: str | None = None
    arch: str | None = None
    reasons: tuple[str, ...] = ()
    signer: str | None = None  # genesis, signer: the repository key from then on
    policy_sha256: str | None = None  # genesis, policy: the policy in force from then on
    db_sha256: str | None = None
    files_sha256: str | None = None
    index_sha256: str | None = None
    compression: str | None = None
    parent: str | None = None
    parent_files: str | None = None
    parent_index: str | None = None
    replaced: tuple[str, ...] = ()
    signature: str | None = None  # base64, as the log keeps it
    files_signature: str | None = None
    package_signatures: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def read(cls, doc: Mapping[str, Any]) -> LogEntry:
        """The entry in ``doc`` (spilled fields already in place); ``EntryError`` if it is
        not one this version of reposeal writes."""
        check_version(doc)
        kind = doc.get("type")
        if kind not in ENTRY_TYPES:
            raise EntryError(f"a log entry of unknown type {str(kind)[:40]!r}")
        texts = {}
        for name in ("job", "request", "repo", "arch", "signer", "policy_sha256", "db_sha256",
                     "files_sha256", "index_sha256", "compression", "parent", "parent_files",
                     "parent_index", "signature", "files_signature"):  # fmt: skip
            value = doc.get(name)
            if value is not None and not isinstance(value, str):
                raise EntryError(f"a {kind} entry's {name} is not text")
            texts[name] = value
        signatures = doc.get("package_signatures", {})
        if not isinstance(signatures, dict) or not all(
            isinstance(v, str) for v in signatures.values()
        ):
            raise EntryError(f"a {kind} entry's package signatures are malformed")
        entry = cls(
            str(kind),
            reasons=_strings(doc.get("reasons", []), "reasons"),
            replaced=_strings(doc.get("replaced", []), "replaced"),
            package_signatures={str(k): v for k, v in signatures.items()},
            **texts,
        )
        entry._check_complete()
        return entry

    def _check_complete(self) -> None:
        """The fields each kind of entry always has."""
        needed = {
            "genesis": ("signer", "policy_sha256"),
            "signer": ("signer",),
            "policy": ("policy_sha256",),
            "db": ("repo", "arch", "db_sha256", "files_sha256", "index_sha256", "compression"),
            "refresh": ("repo", "arch", "db_sha256"),
            "packages": ("repo",),
        }.get(self.type, ())
        missing = [n for n in needed if getattr(self, n) is None]
        if missing:
            raise EntryError(f"a {self.type} entry lacks {', '.join(missing)}")


@dataclass(frozen=True)
class TransitionEntry:
    """A signed database: what its transition added (records by name, each with the layer
    it moved from, if any) and removed, and the statements it used up."""

    repo: str
    arch: str
    parent: str | None
    db_sha256: str
    adds: Mapping[str, PackageRecord]
    moved_from: Mapping[str, str] = field(default_factory=dict)
    removes: tuple[str, ...] = ()
    used_overrides: tuple[str, ...] = ()
    used_removals: tuple[str, ...] = ()
    admitted: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # an adoption's: the packagers' signatures it lists as %PGPSIG% (sha256 -> base64)
    signatures: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PackagesEntry:
    """Signed package files (their versions are bound from then on)."""

    repo: str
    records: Mapping[str, PackageRecord]
    signatures: Mapping[str, str] = field(default_factory=dict)  # sha256 -> base64


StateEntry = TransitionEntry | PackagesEntry
RecordsOf = Callable[[str], Mapping[str, PackageRecord]]


def _strings(value: object, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise EntryError(f"a log entry's {what} is not a list of strings")
    return tuple(value)


def parse(doc: Mapping[str, Any], records_of: RecordsOf) -> StateEntry | None:
    """The typed entry for a state-changing log document (None for the others: genesis,
    policy, signer, refresh, refusal). ``records_of(sha256)`` loads a records blob."""
    check_version(doc)
    kind = doc.get("type")
    if kind not in STATE_TYPES:
        return None
    try:
        records = records_of(str(doc["records"]))
        if kind == "packages":
            signatures = doc.get("by_sha256", {})
            if not isinstance(signatures, dict):
                raise EntryError("a packages entry is malformed")
            return PackagesEntry(
                str(doc["repo"]), records, {str(k): str(v) for k, v in signatures.items()}
            )
        moved = doc.get("moved_from", {})
        admitted = doc.get("admitted", {})
        adopted = doc.get("package_signatures", {})
        if not all(isinstance(x, dict) for x in (moved, admitted, adopted)):
            raise EntryError("a transition entry is malformed")
        parent = doc.get("parent")
        return TransitionEntry(
            repo=str(doc["repo"]),
            arch=str(doc["arch"]),
            parent=parent if isinstance(parent, str) else None,
            db_sha256=str(doc["db_sha256"]),
            adds=records,
            moved_from={str(k): str(v) for k, v in moved.items()},
            removes=_strings(doc.get("removes", []), "removes"),
            used_overrides=_strings(doc.get("used_overrides", []), "used overrides"),
            used_removals=_strings(doc.get("used_removals", []), "used removals"),
            admitted={str(k): _strings(v, "approvals") for k, v in admitted.items()},
            signatures={str(k): str(v) for k, v in adopted.items()},
        )
    except KeyError as exc:
        raise EntryError(f"a {kind} entry lacks {exc}") from None


def _raise_highest(highest: dict[tuple[str, str], str], repo: str, r: PackageRecord) -> None:
    h = highest.get((repo, r.name))
    if h is None or vercmp(r.version, h) > 0:
        highest[(repo, r.name)] = r.version


def apply(state: SigningState, entry: StateEntry) -> SigningState:
    """The state after a signature the log records."""
    highest = dict(state.highest)
    bindings = dict(state.bindings)
    if isinstance(entry, PackagesEntry):
        for r in entry.records.values():
            _raise_highest(highest, entry.repo, r)
            bindings[(r.name, r.version, r.arch)] = r.sha256
        signatures = dict(state.signatures)
        for sha, sig in entry.signatures.items():
            signatures.setdefault(sha, sig)  # one signature per file, ever
        return replace(state, highest=highest, bindings=bindings, signatures=signatures)
    key = (entry.repo, entry.arch)
    held = dict(state.current.get(key, {}))
    admitted = dict(state.admitted)
    spent = set(state.spent)
    origins = dict(state.origins)
    for name in entry.removes:
        old = held.pop(name, None)
        if old is not None:  # its approvals are spent: coming back needs new ones
            spent |= admitted.get((entry.repo, name, old.version), frozenset())
    for name, r in entry.adds.items():
        held[name] = r
        _raise_highest(highest, entry.repo, r)
        build = (r.name, r.version, r.arch)
        bindings[build] = r.sha256
        origins[build] = origins.get(build, frozenset()) | {entry.repo}
        if name in entry.admitted:
            admitted[(entry.repo, name, r.version)] = frozenset(entry.admitted[name])
    last = dict(state.last_db)
    last[key] = entry.db_sha256
    current = dict(state.current)
    current[key] = held
    signatures = dict(state.signatures)
    for sha, sig in entry.signatures.items():
        signatures.setdefault(sha, sig)
    return replace(
        state,
        signatures=signatures if entry.signatures else state.signatures,
        last_db=last,
        highest=highest,
        bindings=bindings,
        used_overrides=state.used_overrides | set(entry.used_overrides),
        origins=origins,
        current=current,
        used_removals=state.used_removals | set(entry.used_removals),
        admitted=admitted,
        spent=frozenset(spent),
    )
