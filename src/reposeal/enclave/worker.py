"""The sandboxed worker's decision: reads one job's bytes, derives every fact, applies
``decide``.

It runs in a process forked for this one job inside bubblewrap (see ``zygote``) and sees
only what the enclave hands it through :class:`JobInput`: the job's blobs, and the package
and evidence files it asks for by name. It holds no key and signs nothing. Any malformed
input ends as a refusal with a typed reason, never a crash of the enclave.

Blobs of a job: new.db, parent.records.json or parent.db. The signing state is asked for
once the worker knows which package names the job concerns.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection
from dataclasses import replace
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from reposeal.alpm.buildinfo import pkgbuild_sha256
from reposeal.alpm.desc import render_files
from reposeal.alpm.limits import DEFAULT_LIMITS
from reposeal.alpm.package import read_package
from reposeal.enclave.dbread import chunk_map, files_sha256, read_db, read_files_db
from reposeal.enclave.records import (
    load_records_and_entries,
    record_to_json,
)
from reposeal.errors import ReposealError
from reposeal.evidence.files import MAX_SIG_FILE_BYTES
from reposeal.evidence.quorum import Signed, load_signed
from reposeal.evidence.statements import MAX_STATEMENT_BYTES, from_bytes
from reposeal.policy.decide import (
    Evidence,
    PackageRecord,
    Request,
    SigningState,
    decide,
    decide_packages,
)
from reposeal.policy.document import Policy

ROLE = {
    "approval": "maintainers",
    "removal": "maintainers",
    "build": "builders",
    "override": "admins",
}


class JobInput(Protocol):
    """What a worker may see of its job (folders: "job", "packages", "evidence")."""

    spec: dict[str, Any]
    policy: Policy

    def read(self, folder: str, name: str, limit: int) -> bytes | None:
        """The whole file, or None if it is not there; more than ``limit`` bytes is an error."""
        ...

    def open(self, folder: str, name: str) -> BinaryIO | None: ...

    def names(self, folder: str) -> list[str]: ...

    def state(self, names: Collection[str]) -> SigningState:
        """What the enclave has signed, restricted to ``names`` (see ``restrict_state``)."""
        ...


def _blob(job: JobInput, name: str, limit: int = DEFAULT_LIMITS.max_db_bytes) -> bytes:
    data = job.read("job", name, limit)
    if data is None:
        raise ReposealError(f"the job lacks {name}")
    return data


def _with_buildinfo(rec: PackageRecord, job: JobInput) -> tuple[PackageRecord, str, str | None]:
    """The record completed from its package file (``pkgbuild_sha256``), the
    ``files_sha256`` its files-database entry must have, and what is wrong, if anything."""
    opened = job.open("packages", rec.filename)
    if opened is None:
        return rec, "", f"{rec.name} {rec.version}: package file {rec.filename} was not sent"
    with opened:
        pkg = read_package(Path(rec.filename), opened=opened)
    info = pkg.facts.info
    listed = files_sha256(render_files(pkg.files))
    if pkg.facts.sha256 != rec.sha256:
        return rec, listed, f"{rec.name}: the file's sha256 differs from the database's %SHA256SUM%"
    if (info.name, info.version, info.arch) != (rec.name, rec.version, rec.arch):
        return rec, listed, f"{rec.name}: the package's .PKGINFO does not match its database entry"
    base = info.base or info.name
    if base != rec.pkgbase:
        return rec, listed, f"{rec.name}: pkgbase {base} in .PKGINFO, {rec.pkgbase} in the database"
    return (
        PackageRecord(
            rec.name,
            rec.version,
            rec.arch,
            rec.sha256,
            rec.filename,
            rec.pkgbase,
            pkgbuild_sha256(pkg.buildinfo),
        ),
        listed,
        None,
    )


def _listing(rec: PackageRecord, job: JobInput) -> str | None:
    """The ``files_sha256`` of a package's file list, if its file was sent and is this one."""
    opened = job.open("packages", rec.filename)
    if opened is None:
        return None
    with opened:
        pkg = read_package(Path(rec.filename), opened=opened)
    return files_sha256(render_files(pkg.files)) if pkg.facts.sha256 == rec.sha256 else None


def _evidence(job: JobInput) -> tuple[Evidence, list[str], list[str]]:
    """Verified evidence, what was ignored and why, and the sha256 of each used statement."""
    policy = job.policy
    kinds: dict[str, list[Signed]] = {k: [] for k in ROLE}
    ignored: list[str] = []
    used: list[str] = []
    for name in sorted(n for n in job.names("evidence") if n.endswith(".json")):
        try:
            raw = job.read("evidence", name, MAX_STATEMENT_BYTES)
            if raw is None:
                continue
            sigs = job.read("evidence", name + ".sig", MAX_SIG_FILE_BYTES) or b""
            kind = from_bytes(raw).kind
            kinds[kind].append(load_signed(raw, sigs, policy.keyrings[ROLE[kind]]))
            used.append(hashlib.sha256(raw).hexdigest())
        except ReposealError as exc:
            ignored.append(f"{name}: {exc.message}")
    evidence = Evidence(kinds["approval"], kinds["build"], kinds["removal"], kinds["override"])
    return evidence, ignored, used


def _record_of_file(job: JobInput, name: str) -> PackageRecord:
    """A package record from the package file alone (.PKGINFO and .BUILDINFO re-read)."""
    opened = job.open("packages", name)
    if opened is None:
        raise ReposealError("the package file was not sent", path=name)
    with opened:
        pkg = read_package(Path(name), opened=opened)
    info = pkg.facts.info
    return PackageRecord(
        info.name,
        info.version,
        info.arch,
        pkg.facts.sha256,
        name,
        info.base or info.name,
        pkgbuild_sha256(pkg.buildinfo),
    )


def run_packages(job: JobInput) -> dict[str, Any]:
    """A package-signing job: every file in packages/ is read and checked."""
    spec, policy = job.spec, job.policy
    records: dict[str, PackageRecord] = {}
    reasons: list[str] = []
    for name in sorted(job.names("packages")):
        if name.endswith(".sig"):
            continue
        try:
            rec = _record_of_file(job, name)
        except ReposealError as exc:
            reasons.append(str(exc))
            continue
        if rec.name in records:
            reasons.append(f"{rec.name}: two files in one job")
        records[rec.name] = rec
    evidence, ignored, used = _evidence(job)
    state = job.state(records)
    decision = decide_packages(state, spec["repo"], records, evidence, policy)
    reasons += decision.reasons
    return {
        "decision": "refuse" if reasons or not records else "accept",
        "reasons": reasons or ([] if records else ["no package files in the job"]),
        "ignored_evidence": ignored,
        "repo": spec["repo"],
        "policy_version": policy.version,
        "evidence": sorted(used),
        "packages": [record_to_json(r) for r in sorted(records.values(), key=lambda r: r.name)],
    }


def run(job: JobInput) -> dict[str, Any]:
    """The decision on one job; the records derived from the bytes go in "packages"."""
    spec, policy = job.spec, job.policy
    if spec.get("kind") == "packages":
        return run_packages(job)
    old: dict[str, PackageRecord] = {}
    known: dict[str, tuple[str, PackageRecord]] = {}
    old_files: dict[str, str] = {}  # name -> files_sha256, as the parent's files database had
    chunks_doc: object = None
    reasons: list[str] = []
    parent = spec.get("parent")
    if parent is not None and spec.get("parent_records"):
        # the parent's records (and chunk map) as the enclave logged them (hash-bound)
        logged = _blob(job, "parent.records.json")
        old, entries, old_files = load_records_and_entries(lambda _: logged, spec["parent_records"])
        known = {n: (entries[n], r) for n, r in old.items() if n in entries}
        if spec.get("parent_chunks"):
            chunks = _blob(job, "parent.chunks.json")
            if hashlib.sha256(chunks).hexdigest() == spec["parent_chunks"]:
                chunks_doc = json.loads(chunks)
    elif parent is not None:
        parent_blob = _blob(job, "parent.db")
        if hashlib.sha256(parent_blob).hexdigest() != parent:
            raise ReposealError("the parent database sent does not match its hash")
        first = read_db(parent_blob, "parent database", {}, {})
        old, known = first.records, {n: (first.entries[n], r) for n, r in first.records.items()}
        chunks_doc = first.chunks
    new_blob = _blob(job, "new.db")
    read = read_db(new_blob, "new database", known, chunk_map(chunks_doc))
    new, entries = read.records, read.entries
    changed = set(old) - set(new)  # removed
    listed: dict[str, str] = {}  # name -> files_sha256 its files-database entry must have
    for name, rec in list(new.items()):
        prev = old.get(name)
        if prev is rec or (
            prev is not None and replace(rec, pkgbuild_sha256=prev.pkgbuild_sha256) == prev
        ):
            new[name] = prev  # the very entry signed before (its .BUILDINFO was read then)
            if name in old_files:
                listed[name] = old_files[name]
            continue
        changed.add(name)
        new[name], listed[name], problem = _with_buildinfo(rec, job)
        if problem:
            reasons.append(problem)
    files_blob = job.read("job", "new.files", DEFAULT_LIMITS.max_db_bytes)
    files_chunks = None
    if files_blob is not None:
        for name in sorted(set(new) - set(listed)):  # signed before without a files database
            found = _listing(new[name], job)
            if found is not None:
                listed[name] = found
        parent_files = {n: (known[n][0], h) for n, h in old_files.items() if n in known}
        files_chunks = _check_files_db(
            files_blob, entries, listed, parent_files, chunks_doc, reasons
        )
    evidence, ignored, used = _evidence(job)
    state = job.state(changed)
    digest = hashlib.sha256(new_blob).hexdigest()
    request = Request(spec["repo"], spec["arch"], parent, digest, old, new)
    decision = decide(state, request, evidence, policy)
    reasons += decision.reasons
    files = listed if files_blob is not None else {}
    return {
        "decision": "refuse" if reasons else "accept",
        "reasons": reasons,
        "ignored_evidence": ignored,
        "used_overrides": decision.used_overrides,
        "db_sha256": request.db_sha256,
        "files_sha256": None if files_blob is None else hashlib.sha256(files_blob).hexdigest(),
        "parent": parent,
        "repo": spec["repo"],
        "arch": spec["arch"],
        "policy_version": policy.version,
        "evidence": sorted(used),
        "packages": [record_to_json(new[n], entries[n], files.get(n)) for n in sorted(new)],
        "chunks": read.chunks if files_blob is None else {"db": read.chunks, "files": files_chunks},
    }


def _check_files_db(
    blob: bytes,
    entries: dict[str, str],
    listed: dict[str, str],
    parent_files: dict[str, tuple[str, str]],
    chunks_doc: object,
    reasons: list[str],
) -> list[dict[str, Any]] | None:
    """Check the files database against the sync database just read: the same packages,
    each with the same desc, each listing exactly the files of its package (read from the
    package file now, or checked when the parent was signed). ``parent_files``: what the
    parent's files database held, name -> (entry_sha256, files_sha256), for the chunks it
    shares byte for byte. Returns its chunk map."""
    found = read_files_db(blob, "new files database", parent_files, chunk_map(chunks_doc, "files"))
    extra = sorted(set(found.entries) ^ set(entries))
    if extra:
        reasons.append(
            "the files database does not list the same packages as the sync database "
            f"(differs in {', '.join(extra[:5])})"
        )
    for name in sorted(set(found.entries) & set(entries)):
        if found.entries[name] != entries[name]:
            reasons.append(f"{name}: its files-database desc differs from the sync database's")
        elif name not in listed:
            reasons.append(
                f"{name}: its file list cannot be checked (no package file sent, none checked "
                "before); send the package file"
            )
        elif found.files[name] != listed[name]:
            reasons.append(f"{name}: the files database lists other files than the package has")
    return found.chunks


def decide_job(job: JobInput) -> dict[str, Any]:
    """``run``, with every failure turned into a refusal that says why."""
    try:
        return run(job)
    except ReposealError as exc:
        return {"decision": "refuse", "reasons": [str(exc)], "kind": type(exc).__name__}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return {"decision": "refuse", "reasons": [f"malformed job: {exc}"]}
