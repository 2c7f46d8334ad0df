"""What the enclave derives from bytes (package records) and what it writes to its log.

Log entries are canonical JSON (RFC 8785), one per decision, so anyone can replay them;
the signing state is nothing but that replay.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from reposeal import canonical
from reposeal.policy.entries import (
    LogEntry,
    TransitionEntry,
    apply,
    parse,
)
from reposeal.policy.state import NameIndex, PackageRecord, SigningState


def genesis_entry(policy_sha256: str, signer_fpr: str, note_verifier: str) -> bytes:
    entry = LogEntry(
        "genesis",
        policy_sha256=policy_sha256,
        signer=signer_fpr,
        note_verifier=note_verifier,
        time=int(time.time()),  # when the policy came into force (key overlap)
    )
    return canonical.dumps(entry.to_json())


RecordsLoader = Callable[[str], bytes]

# fields that grow with a job's size; an entry too large for the log (C2SP: 64 KiB) keeps
# them in a blob named by its hash ("spilled"), stored beside the records
SPILLABLE = (
    "evidence",
    "evidence_signatures",
    "pkgbuilds",
    "by_sha256",
    "package_signatures",
    "reasons",
    "used_overrides",
    "used_removals",
    "admitted",
    "moved_from",
    "removes",
    "replaced",
)


def fit_entry(raw: bytes, store: Callable[[bytes], str]) -> bytes:
    """``raw`` if it fits in a log entry; else the same entry with its large fields moved
    to a blob (``store(blob)`` keeps it and returns its sha256)."""
    import json

    from reposeal.alpm.limits import MAX_ENTRY_BYTES

    if len(raw) <= MAX_ENTRY_BYTES:
        return raw
    doc = json.loads(raw)
    spilled = {k: doc.pop(k) for k in SPILLABLE if k in doc}
    doc["spilled"] = store(canonical.dumps(spilled))
    return canonical.dumps(doc)


def read_entry(raw: bytes, loader: RecordsLoader) -> dict[str, Any]:
    """A log entry as a document, with spilled fields back in place (hash-checked)."""
    import json

    doc: dict[str, Any] = json.loads(raw)
    digest = doc.pop("spilled", None)
    if isinstance(digest, str):
        blob = loader(digest)
        if hashlib.sha256(blob).hexdigest() != digest:
            raise ValueError(f"spilled fields {digest[:16]}… do not match their hash")
        doc.update(json.loads(blob))
    return doc


def named_files(raw_entry: bytes, loader: RecordsLoader) -> list[str]:
    """The files a log entry names, by their path in an enclave home (records, chunk maps,
    spilled fields, statements and their signatures, policies): what an auditor, or a home
    rebuilt from the mirrors, needs beside the entry to replay it. ``loader`` gives a
    records blob by hash (for spilled fields)."""
    import json

    doc = json.loads(raw_entry)
    names = [f"records/{doc[k]}.json" for k in ("records", "chunks", "spilled")
             if isinstance(doc.get(k), str)]  # fmt: skip
    full = LogEntry.read(read_entry(raw_entry, loader))
    for statement, signatures in evidence_files(full):
        names.append(statement)
        names += signatures
    names += [f"pkgbuilds/{d}" for d in full.pkgbuilds]  # approved PKGBUILD texts, by sha256
    if full.policy_sha256 is not None:
        names += [f"policies/{full.policy_sha256}.json", f"policies/{full.policy_sha256}.json.sig"]
    return names


def evidence_files(entry: LogEntry) -> list[tuple[str, list[str]]]:
    """The statements an entry rested on, each with its signature files, by their path in
    a home: ``evidence/SHA256.json`` and ``evidence/SHA256.sig`` (each signature file named
    by its own hash, as the entry names it: a later job bringing the same statement with
    other signatures never changes what an earlier entry rested on). Entries from before
    that name ``evidence/SHA256.json.sig``."""
    signed = entry.evidence_signatures
    return [
        (
            f"evidence/{digest}.json",
            [f"evidence/{s}.sig" for s in signed.get(digest, ())]
            if signed is not None
            else [f"evidence/{digest}.json.sig"],
        )
        for digest in entry.evidence
    ]


def load_records(loader: RecordsLoader, digest: str) -> dict[str, PackageRecord]:
    """The package records a log entry names, checked against their hash."""
    return load_records_and_entries(loader, digest)[0]


def load_records_and_entries(
    loader: RecordsLoader, digest: str
) -> tuple[dict[str, PackageRecord], dict[str, str], dict[str, str]]:
    """The records a log entry names, the hash of the database entry each was derived
    from (``entry_sha256``; only database records have one), and of its files-database
    entry's file list (``files_sha256``; when a files database was signed)."""
    import json

    blob = loader(digest)
    if hashlib.sha256(blob).hexdigest() != digest:
        raise ValueError(f"records {digest[:16]}… do not match their hash")
    docs = json.loads(blob)
    records = {
        p["name"]: PackageRecord(
            p["name"],
            p["version"],
            p["arch"],
            p["sha256"],
            p["filename"],
            p["pkgbase"],
            p.get("pkgbuild_sha256"),
        )
        for p in docs
    }
    entries = {p["name"]: p["entry"] for p in docs if isinstance(p.get("entry"), str)}
    files = {p["name"]: p["files"] for p in docs if isinstance(p.get("files"), str)}
    return records, entries, files


def replay(
    entries: Iterable[LogEntry],
    loader: RecordsLoader,
    start: SigningState | None = None,
    parsed: Mapping[str, dict[str, PackageRecord]] | None = None,
    index: NameIndex | None = None,
) -> SigningState:
    """The signing state implied by a log's entries (refusals change nothing), continuing
    from ``start`` when the entries extend a log already replayed. ``parsed``: records
    already loaded (and hash-checked), by hash; ``index`` learns every record applied."""

    def records_of(digest: str) -> dict[str, PackageRecord]:
        if parsed is not None and digest in parsed:
            return parsed[digest]
        return load_records(loader, digest)

    state = SigningState() if start is None else start
    for logged in entries:
        entry = parse(logged, records_of)
        if entry is not None:
            state = apply(state, entry)
            if index is not None:
                if isinstance(entry, TransitionEntry):
                    index.learn(entry.repo, entry.arch, entry.adds.values())
                else:
                    index.learn(entry.repo, None, entry.records.values())
    return state


def _record(r: PackageRecord) -> list[str | None]:
    return [r.name, r.version, r.arch, r.sha256, r.filename, r.pkgbase, r.pkgbuild_sha256]


def state_to_json(state: SigningState) -> bytes:
    """A snapshot of the signing state for a sandboxed worker (read-only there; never signed
    or hashed, so the C JSON encoder will do)."""
    import json

    return json.dumps(
        {
            "last_db": [[r, a, h] for (r, a), h in sorted(state.last_db.items())],
            "highest": [[r, n, v] for (r, n), v in sorted(state.highest.items())],
            "bindings": [[n, v, a, h] for (n, v, a), h in sorted(state.bindings.items())],
            "origins": [[n, v, a, sorted(r)] for (n, v, a), r in sorted(state.origins.items())],
            "current": [
                [r, a, [_record(p) for _, p in sorted(held.items())]]
                for (r, a), held in sorted(state.current.items())
            ],
            "used_overrides": sorted(state.used_overrides),
            "used_removals": sorted(state.used_removals),
            "admitted": [[r, n, v, sorted(s)] for (r, n, v), s in sorted(state.admitted.items())],
            "spent": sorted(state.spent),
            "signatures": sorted(state.signatures.items()),
        },
        separators=(",", ":"),
    ).encode()


def state_from_json(raw: bytes) -> SigningState:
    import json

    doc = json.loads(raw)
    return SigningState(
        last_db={(r, a): h for r, a, h in doc["last_db"]},
        highest={(r, n): v for r, n, v in doc["highest"]},
        bindings={(n, v, a): h for n, v, a, h in doc["bindings"]},
        used_overrides=frozenset(doc["used_overrides"]),
        origins={(n, v, a): frozenset(r) for n, v, a, r in doc["origins"]},
        current={(r, a): {p[0]: PackageRecord(*p) for p in held} for r, a, held in doc["current"]},
        used_removals=frozenset(doc["used_removals"]),
        admitted={(r, n, v): frozenset(s) for r, n, v, s in doc["admitted"]},
        spent=frozenset(doc["spent"]),
        signatures={sha: sig for sha, sig in doc["signatures"]},
    )
