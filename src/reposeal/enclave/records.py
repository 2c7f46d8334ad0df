"""What the enclave derives from bytes (package records) and what it writes to its log.

Log entries are canonical JSON (RFC 8785), one per decision, so anyone can replay them;
the signing state is nothing but that replay.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from reposeal import canonical
from reposeal.alpm.desc import single
from reposeal.alpm.syncdb import Entry
from reposeal.policy.decide import (
    Decision,
    PackageRecord,
    Request,
    SigningState,
    apply,
    apply_packages,
)

ENTRY_VERSION = 1


def record_from_entry(e: Entry, f: dict[str, list[str]] | None = None) -> PackageRecord:
    """A package record from a database entry (the package file adds pkgbuild_sha256);
    ``f`` is its parsed desc when the caller has it already."""
    where = f"entry {e.dirname}"
    f = e.fields() if f is None else f
    base = f.get("BASE", [e.name])
    return PackageRecord(
        name=e.name,
        version=e.version,
        arch=single(f, "ARCH", where),
        sha256=single(f, "SHA256SUM", where),
        filename=single(f, "FILENAME", where),
        pkgbase=base[0] if base else e.name,
    )


def genesis_entry(policy_sha256: str, signer_fpr: str, note_verifier: str) -> bytes:
    return canonical.dumps(
        {
            "v": ENTRY_VERSION,
            "type": "genesis",
            "policy_sha256": policy_sha256,
            "signer": signer_fpr,
            "note_verifier": note_verifier,
            "time": int(time.time()),  # when the policy came into force (key overlap)
        }
    )


def record_to_json(
    r: PackageRecord, entry: str | None = None, files: str | None = None
) -> dict[str, str | None]:
    """A record as logged; ``entry``: the ``entry_sha256`` it was derived from, if any;
    ``files``: the ``files_sha256`` of its files-database entry, once one was checked."""
    return (
        ({"entry": entry} if entry is not None else {})
        | ({"files": files} if files is not None else {})
    ) | {
        "name": r.name,
        "version": r.version,
        "arch": r.arch,
        "sha256": r.sha256,
        "filename": r.filename,
        "pkgbase": r.pkgbase,
        "pkgbuild_sha256": r.pkgbuild_sha256,
    }


def transition_entry(
    result: dict[str, Any],
    job_id: str,
    signature: bytes | None,
    records_sha256: str | None,
    chunks_sha256: str | None = None,
    files_signature: bytes | None = None,
) -> bytes:
    """A signed (or refused) database transition as the log keeps it: the worker's findings
    (records re-derived from the bytes, by hash; the evidence used), the job id, the
    signature."""
    accepted = result.get("decision") == "accept"
    doc: dict[str, Any] = {
        "v": ENTRY_VERSION,
        "type": "db" if accepted else "refusal",
        "job": job_id,
        **{k: result.get(k) for k in ("repo", "arch", "parent", "db_sha256", "policy_version")},
        "records": records_sha256,
        **({"chunks": chunks_sha256} if chunks_sha256 else {}),
        "evidence": result.get("evidence", []),
        "used_overrides": result.get("used_overrides", []),
    }
    if accepted:
        assert signature is not None
        doc["signature"] = base64.b64encode(signature).decode()
        if files_signature is not None:  # the files database, checked with it
            doc["files_sha256"] = result.get("files_sha256")
            doc["files_signature"] = base64.b64encode(files_signature).decode()
    else:
        doc["reasons"] = result.get("reasons", [])
    return canonical.dumps(doc)


RecordsLoader = Callable[[str], bytes]

# fields that grow with a job's size; an entry too large for the log (C2SP: 64 KiB) keeps
# them in a blob named by its hash ("spilled"), stored beside the records
SPILLABLE = ("evidence", "by_sha256", "package_signatures", "reasons", "used_overrides")


def fit_entry(raw: bytes, store: Callable[[bytes], str]) -> bytes:
    """``raw`` if it fits in a log entry; else the same entry with its large fields moved
    to a blob (``store(blob)`` keeps it and returns its sha256)."""
    import json

    from reposeal.translog.store import MAX_ENTRY_BYTES

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
    evidence = read_entry(raw_entry, loader).get("evidence", [])
    for digest in evidence if isinstance(evidence, list) else []:
        names += [f"evidence/{digest}.json", f"evidence/{digest}.json.sig"]
    policy = doc.get("policy_sha256")
    if isinstance(policy, str):
        names += [f"policies/{policy}.json", f"policies/{policy}.json.sig"]
    return names


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


def entry_sha256(e: Entry) -> str:
    """What a database entry is, byte for byte: two equal hashes, one record."""
    return hashlib.sha256(e.dirname.encode() + b"/desc\0" + e.desc).hexdigest()


class NameIndex:
    """Which keys of the signing state concern each package name, kept while the log is
    replayed: a worker gets the state about its names in time that follows the names, not
    the history of every repository."""

    def __init__(self) -> None:
        self.repos: set[str] = set()
        self.builds: dict[str, set[tuple[str, str]]] = {}  # name -> {(version, arch)}

    def add(self, repo: str, records: Iterable[PackageRecord]) -> None:
        self.repos.add(repo)
        for r in records:
            self.builds.setdefault(r.name, set()).add((r.version, r.arch))

    def restrict(self, state: SigningState, names: Iterable[str]) -> SigningState:
        """``restrict_state(state, names)`` for a state this index has seen all of."""
        wanted = set(names)
        keys = [(n, v, a) for n in wanted for v, a in self.builds.get(n, ())]
        highest = {(r, n) for r in self.repos for n in wanted}
        return SigningState(
            last_db=state.last_db,
            highest={k: state.highest[k] for k in highest if k in state.highest},
            bindings={k: state.bindings[k] for k in keys if k in state.bindings},
            used_overrides=state.used_overrides,
            origins={k: state.origins[k] for k in keys if k in state.origins},
        )


def replay(
    entries: Iterable[bytes],
    loader: RecordsLoader,
    start: SigningState | None = None,
    parsed: Mapping[str, dict[str, PackageRecord]] | None = None,
    index: NameIndex | None = None,
) -> SigningState:
    """The signing state implied by a log's entries (refusals change nothing), continuing
    from ``start`` when the entries extend a log already replayed. ``parsed``: records
    already loaded (and hash-checked), by hash; ``index`` learns every record applied."""
    import json

    def records_of(digest: str) -> dict[str, PackageRecord]:
        if parsed is not None and digest in parsed:
            return parsed[digest]
        return load_records(loader, digest)

    state = SigningState() if start is None else start
    current: dict[tuple[str, str], Mapping[str, PackageRecord]] = {}
    for raw in entries:
        doc = json.loads(raw)
        if doc.get("type") not in ("packages", "db"):
            continue
        if "spilled" in doc:
            doc = read_entry(raw, loader)
        records = records_of(doc["records"])
        if index is not None:
            index.add(doc["repo"], records.values())
        if doc.get("type") == "packages":
            state = apply_packages(state, doc["repo"], records)
            continue
        key = (doc["repo"], doc["arch"])
        request = Request(
            doc["repo"], doc["arch"], doc["parent"], doc["db_sha256"], current.get(key, {}), records
        )
        accepted = Decision(used_overrides=list(doc["used_overrides"]))
        state = apply(state, request, accepted)
        current[key] = records
    return state


def state_to_json(state: SigningState) -> bytes:
    """A snapshot of the signing state for a sandboxed worker (read-only there; never signed
    or hashed, so the C JSON encoder will do)."""
    import json

    return json.dumps(
        {
            "last_db": [[r, a, h] for (r, a), h in sorted(state.last_db.items())],
            "highest": [[r, n, v] for (r, n), v in sorted(state.highest.items())],
            "bindings": [[n, v, a, h] for (n, v, a), h in sorted(state.bindings.items())],
            "origins": [[n, v, a, r] for (n, v, a), r in sorted(state.origins.items())],
            "used_overrides": sorted(state.used_overrides),
        },
        separators=(",", ":"),
    ).encode()


def restrict_state(state: SigningState, names: Iterable[str]) -> SigningState:
    """What ``decide`` can look up about ``names``: their highest versions, bindings and
    origins, with every last database and used override. A worker asks for only this much,
    so a small job does not carry the whole history of a large repository."""
    wanted = frozenset(names)
    return SigningState(
        last_db=state.last_db,
        highest={k: v for k, v in state.highest.items() if k[1] in wanted},
        bindings={k: v for k, v in state.bindings.items() if k[0] in wanted},
        used_overrides=state.used_overrides,
        origins={k: v for k, v in state.origins.items() if k[0] in wanted},
    )


def state_from_json(raw: bytes) -> SigningState:
    import json

    doc = json.loads(raw)
    return SigningState(
        last_db={(r, a): h for r, a, h in doc["last_db"]},
        highest={(r, n): v for r, n, v in doc["highest"]},
        bindings={(n, v, a): h for n, v, a, h in doc["bindings"]},
        used_overrides=frozenset(doc["used_overrides"]),
        origins={(n, v, a): r for n, v, a, r in doc["origins"]},
    )
