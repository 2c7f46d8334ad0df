"""What the enclave derives from bytes (package records) and what it writes to its log.

Log entries are canonical JSON (RFC 8785), one per decision, so anyone can replay them;
the signing state is nothing but that replay.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from typing import Any

import rfc8785

from reposeal.alpm.desc import single
from reposeal.alpm.syncdb import Entry
from reposeal.policy.decide import Decision, PackageRecord, Request, SigningState, apply

ENTRY_VERSION = 1


def record_from_entry(e: Entry) -> PackageRecord:
    """A package record from a database entry (the package file adds pkgbuild_sha256)."""
    where = f"entry {e.dirname}"
    f = e.fields()
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
    return rfc8785.dumps(
        {
            "v": ENTRY_VERSION,
            "type": "genesis",
            "policy_sha256": policy_sha256,
            "signer": signer_fpr,
            "note_verifier": note_verifier,
        }
    )


def transition_entry(result: dict[str, Any], job_id: str, signature: bytes | None) -> bytes:
    """A signed (or refused) database transition as the log keeps it: the worker's findings
    (records re-derived from the bytes, the evidence used), the job id and the signature."""
    accepted = result.get("decision") == "accept"
    doc: dict[str, Any] = {
        "v": ENTRY_VERSION,
        "type": "db" if accepted else "refusal",
        "job": job_id,
        **{k: result.get(k) for k in ("repo", "arch", "parent", "db_sha256", "policy_version")},
        "packages": result.get("packages", []),
        "evidence": result.get("evidence", []),
        "used_overrides": result.get("used_overrides", []),
    }
    if accepted:
        assert signature is not None
        doc["signature"] = base64.b64encode(signature).decode()
    else:
        doc["reasons"] = result.get("reasons", [])
    return rfc8785.dumps(doc)


def replay(entries: Iterable[bytes]) -> SigningState:
    """The signing state implied by a log's entries (refusals change nothing)."""
    import json

    state = SigningState()
    current: dict[tuple[str, str], Mapping[str, PackageRecord]] = {}
    for raw in entries:
        doc = json.loads(raw)
        if doc.get("type") != "db":
            continue
        records = {
            p["name"]: PackageRecord(
                p["name"], p["version"], p["arch"], p["sha256"], p["filename"], p["pkgbase"]
            )
            for p in doc["packages"]
        }
        key = (doc["repo"], doc["arch"])
        request = Request(
            doc["repo"], doc["arch"], doc["parent"], doc["db_sha256"], current.get(key, {}), records
        )
        accepted = Decision(used_overrides=list(doc["used_overrides"]))
        state = apply(state, request, accepted)
        current[key] = records
    return state


def state_to_json(state: SigningState) -> bytes:
    """A snapshot of the signing state for a sandboxed worker (read-only there)."""
    return rfc8785.dumps(
        {
            "last_db": [[r, a, h] for (r, a), h in sorted(state.last_db.items())],
            "highest": [[r, n, v] for (r, n), v in sorted(state.highest.items())],
            "bindings": [[n, v, a, h] for (n, v, a), h in sorted(state.bindings.items())],
            "origins": [[n, v, a, r] for (n, v, a), r in sorted(state.origins.items())],
            "used_overrides": sorted(state.used_overrides),
        }
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
