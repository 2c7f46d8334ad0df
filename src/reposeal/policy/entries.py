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
from reposeal.canonical import plain
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
    """Any log entry, as the enclave writes it and every reader takes it (the replay, the
    answers to a retried job, the pruning of old databases, ``enclave audit``, the status
    and provenance pages): its kind and each of its fields, of its type, the version
    checked. The state change itself is ``parse``'s. A field that is None, empty or False
    is not written (readers take its absence as that value)."""

    type: str
    job: str | None = None
    request: str | None = None  # the hash of what the job asked for
    repo: str | None = None
    arch: str | None = None
    reasons: tuple[str, ...] = ()
    signer: str | None = None  # genesis, signer: the repository key from then on
    policy_sha256: str | None = None  # genesis, policy: the policy in force from then on
    note_verifier: str | None = None  # genesis: the log's checkpoint key
    policy_version: int | None = None  # db, packages, signer: the policy it was made under
    version: int | None = None  # policy: the new policy's version
    previous: str | None = None  # policy: the policy it replaced (sha256)
    time: int | None = None  # genesis, signer, policy: when it came into force
    db_sha256: str | None = None
    files_sha256: str | None = None
    index_sha256: str | None = None
    compression: str | None = None
    parent: str | None = None
    parent_files: str | None = None
    parent_index: str | None = None
    records: str | None = None  # the package records blob (sha256)
    replaced: tuple[str, ...] = ()
    removes: tuple[str, ...] = ()
    moved_from: Mapping[str, str] = field(default_factory=dict)
    used_overrides: tuple[str, ...] = ()
    used_removals: tuple[str, ...] = ()
    admitted: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    evidence: tuple[str, ...] = ()  # the statements it rested on (sha256)
    # each statement's signature files (sha256); None in entries from before they were named
    evidence_signatures: Mapping[str, tuple[str, ...]] | None = None
    pkgbuilds: tuple[str, ...] = ()  # the approved PKGBUILD texts kept beside the log
    signature: str | None = None  # base64, as the log keeps it
    files_signature: str | None = None
    package_signatures: Mapping[str, str] = field(default_factory=dict)
    by_sha256: Mapping[str, str] = field(default_factory=dict)  # packages: sha256 -> base64
    adoption: bool = False

    @classmethod
    def read(cls, doc: Mapping[str, Any]) -> LogEntry:
        """The entry in ``doc`` (spilled fields already in place); ``EntryError`` if it is
        not one this version of reposeal writes. Fields it does not know are ignored."""
        check_version(doc)
        kind = doc.get("type")
        if kind not in ENTRY_TYPES:
            raise EntryError(f"a log entry of unknown type {str(kind)[:40]!r}")
        values: dict[str, Any] = {}
        for name, shape in _KINDS.items():  # every field but the type (a test keeps it so)
            value = doc.get(name)
            if value is not None:
                values[name] = _typed(name, shape, value, str(kind))
        entry = cls(str(kind), **values)
        entry._check_complete()
        return entry

    def to_json(self) -> dict[str, Any]:
        """The entry as the log keeps it (canonical JSON of this), as ``read`` reads it."""
        out: dict[str, Any] = {"v": ENTRY_VERSION, "type": self.type}
        for name in _KINDS:
            value = getattr(self, name)
            if value is None or value is False:
                continue
            if isinstance(value, tuple | Mapping) and not value and name != "evidence_signatures":
                continue
            out[name] = plain(value)
        return out

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


# each field's JSON shape: text, a whole number, true/false, a list of texts, an object of
# texts, an object of lists of texts
_TEXT = ("job", "request", "repo", "arch", "signer", "policy_sha256", "note_verifier",
         "previous", "db_sha256", "files_sha256", "index_sha256", "compression", "parent",
         "parent_files", "parent_index", "records", "signature", "files_signature")  # fmt: skip
_TEXTS = ("reasons", "replaced", "removes", "used_overrides", "used_removals", "evidence",
          "pkgbuilds")  # fmt: skip
_KINDS = {
    **dict.fromkeys(_TEXT, "text"),
    **dict.fromkeys(("policy_version", "version", "time"), "number"),
    "adoption": "flag",
    **dict.fromkeys(_TEXTS, "texts"),
    **dict.fromkeys(("moved_from", "package_signatures", "by_sha256"), "text map"),
    **dict.fromkeys(("admitted", "evidence_signatures"), "list map"),
}


def _typed(name: str, kind: str, value: object, entry: str) -> object:
    """One field of an entry, of its kind (lists become tuples); EntryError otherwise."""
    what = f"a {entry} entry's {name.replace('_', ' ')}"
    if kind == "text" and isinstance(value, str):
        return value
    if kind == "number" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind == "flag" and isinstance(value, bool):
        return value
    if kind == "texts" and _is_texts(value):
        return tuple(value)  # type: ignore[arg-type]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        if kind == "text map" and all(isinstance(v, str) for v in value.values()):
            return dict(value)
        if kind == "list map" and all(_is_texts(v) for v in value.values()):
            return {k: tuple(v) for k, v in value.items()}
    raise EntryError(f"{what} is malformed (expected {kind})")


def _is_texts(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


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


def parse(entry: LogEntry, records_of: RecordsOf) -> StateEntry | None:
    """The state change a log entry makes (None for the kinds that make none: genesis,
    policy, signer, refresh, refusal). ``records_of(sha256)`` loads a records blob."""
    if entry.type not in STATE_TYPES:
        return None
    if entry.records is None or entry.repo is None:
        raise EntryError(f"a {entry.type} entry lacks its repository or package records")
    records = records_of(entry.records)
    if entry.type == "packages":
        return PackagesEntry(entry.repo, records, entry.by_sha256)
    if entry.arch is None or entry.db_sha256 is None:
        raise EntryError("a db entry lacks its architecture or database")
    return TransitionEntry(
        repo=entry.repo,
        arch=entry.arch,
        parent=entry.parent,
        db_sha256=entry.db_sha256,
        adds=records,
        moved_from=entry.moved_from,
        removes=entry.removes,
        used_overrides=entry.used_overrides,
        used_removals=entry.used_removals,
        admitted=entry.admitted,
        signatures=entry.package_signatures,
    )


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
