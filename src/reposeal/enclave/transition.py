"""A proposed transition, in the sandboxed worker: the enclave writes the databases itself.

The repo machine proposes what changes in one repository/architecture (package files to add,
moves from a lower layer, names to remove); it never sends a database. The worker:

1. takes the parent databases the enclave wrote and signed last (hash-checked against its
   own log, never the repo machine's bytes) and their chunk index;
2. reads every proposed package file with reposeal's strict reader and again with
   libarchive, refusing any difference, and derives its record, ``desc`` and ``files``;
3. asks the enclave for the signing state about those names and applies ``decide``;
4. on accept, rewrites only the chunks the change touches (every other chunk is kept byte
   for byte), with each new entry rendered from its package (the same renderer as
   ``reposeal db``, byte-identical to repo-add) and the enclave's own logged package
   signature as ``%PGPSIG%``;
5. reads the rewritten chunks back with libarchive and libalpm and compares every field with
   what it meant (``readback``); any difference is a refusal;
6. answers with the decision, the records of what it added, and the new databases and index.

Chunks that are not rewritten are the parent's, which were read back when they were written:
by induction every chunk of every database the enclave signs was read back by pacman's own
libraries. Each chunk is whole tar members in its own compressed member, with no
end-of-archive block and no global header, so the whole archive reads as its chunks in order.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from reposeal import canonical
from reposeal.alpm import chunked, compression
from reposeal.alpm.buildinfo import pkgbuild_sha256
from reposeal.alpm.crosscheck import disagreements
from reposeal.alpm.limits import MAX_CHANGES, MAX_PACKAGER_SIG
from reposeal.alpm.names import name_field
from reposeal.alpm.package import Package, read_package
from reposeal.alpm.syncdb import Entry
from reposeal.enclave.decision import Decision
from reposeal.enclave.readback import Meant, read_back
from reposeal.enclave.worker_io import JobInput, blob, evidence_of
from reposeal.enclave.workspec import WorkSpec
from reposeal.errors import ReposealError
from reposeal.policy.decide import Addition, Transition, decide
from reposeal.policy.state import PackageRecord

COMPRESSIONS = {".gz": compression.GZIP, ".zst": compression.ZSTD}


@dataclass(frozen=True)
class WorkerOutput:
    """A worker's answer: the decision, and the exact bytes the enclave stores and signs."""

    decision: Decision
    blobs: dict[str, bytes]


def record_of(pkg: Package, filename: str) -> PackageRecord:
    info = pkg.facts.info
    return PackageRecord(
        info.name,
        info.version,
        info.arch,
        pkg.facts.sha256,
        filename,
        info.base or info.name,
        pkgbuild_sha256(pkg.buildinfo),
    )


def record_to_json(r: PackageRecord, entry: Entry | None = None) -> dict[str, str | None]:
    """A record as logged, with the sha256 of the ``desc`` and ``files`` written for it."""
    hashes: dict[str, str | None] = {}
    if entry is not None:
        hashes["entry"] = hashlib.sha256(entry.desc).hexdigest()
        hashes["files"] = hashlib.sha256(entry.files or b"").hexdigest()
    return hashes | {
        "name": r.name,
        "version": r.version,
        "arch": r.arch,
        "sha256": r.sha256,
        "filename": r.filename,
        "pkgbase": r.pkgbase,
        "pkgbuild_sha256": r.pkgbuild_sha256,
    }


def _read(job: JobInput, name: str, reasons: list[str]) -> Package | None:
    """A proposed package file, read by reposeal and by libarchive (they must agree)."""
    opened = job.open("packages", name)
    if opened is None:
        reasons.append(f"{name}: the package file was not sent")
        return None
    try:
        with opened:
            pkg = read_package(Path(name), opened=opened)
            problems = disagreements(opened, pkg)
    except ReposealError as exc:
        reasons.append(str(exc))
        return None
    reasons += problems
    return None if problems else pkg


def _parent_chunks(job: JobInput, kind: str) -> list[chunked.Chunk]:
    """The chunks of the databases the enclave signed last, from its own bytes."""
    spec = job.spec
    if spec.parent is None:
        return []
    parts = {"db": blob(job, "parent.db"), "files": blob(job, "parent.files")}
    index = blob(job, "parent.index", 64 << 20)
    wanted = {"db": spec.parent, "files": spec.parent_files}
    for part, data in parts.items():
        if hashlib.sha256(data).hexdigest() != wanted[part]:
            raise ReposealError(f"the enclave's own parent {part} database does not match its log")
    if hashlib.sha256(index).hexdigest() != spec.parent_index:
        raise ReposealError("the enclave's own parent index does not match its log")
    chunks = chunked.chunks_from_index(json.loads(index), kind, parts)
    if chunks is None:
        raise ReposealError("the enclave's own parent index does not describe its databases")
    return chunks


def _proposed(spec: WorkSpec) -> tuple[list[tuple[str, str | None]], list[str]]:
    """(file name, layer it moves from) of every proposed file, and the names to remove."""
    if len(spec.add) + len(spec.moves) + len(spec.remove) > MAX_CHANGES:
        raise ReposealError(f"a transition changes at most {MAX_CHANGES} packages")
    files: list[tuple[str, str | None]] = [(a, None) for a in spec.add]
    files += [(file, name_field(layer)) for file, layer in spec.moves]
    return files, [name_field(n) for n in spec.remove]


def _compression(spec: WorkSpec) -> str:
    kind = COMPRESSIONS.get(spec.compression)
    if kind is None:
        raise ReposealError(f"databases are written as {' or '.join(COMPRESSIONS)}")
    return kind


def _read_all(
    job: JobInput, files: list[tuple[str, str | None]], reasons: list[str]
) -> tuple[dict[str, Package], dict[str, Addition]]:
    """Every proposed file read (twice, see ``_read``), as packages and additions by name."""
    packages: dict[str, Package] = {}
    adds: dict[str, Addition] = {}
    for name, moved_from in files:
        pkg = _read(job, name, reasons)
        if pkg is None:
            continue
        rec = record_of(pkg, name)
        if rec.name in adds:
            reasons.append(f"{rec.name}: two files in one transition")
            continue
        packages[rec.name], adds[rec.name] = pkg, Addition(rec, moved_from)
    return packages, adds


def run_transition(job: JobInput) -> WorkerOutput:
    spec, policy = job.spec, job.policy
    repo, arch = spec.repo, spec.arch
    kind = _compression(spec)
    files, removes = _proposed(spec)
    reasons: list[str] = []
    packages, adds = _read_all(job, files, reasons)
    names = set(adds) | set(removes)
    bases = {a.record.pkgbase for a in adds.values()}
    state = job.state(names, bases, {a.record.sha256 for a in adds.values()})
    evidence, ignored, used = evidence_of(job)
    t = Transition(repo, arch, spec.parent, adds, removes)
    decision = decide(state, t, evidence, policy)
    reasons += decision.reasons
    summary = Decision(
        "refuse",
        repo=repo,
        arch=arch,
        parent=t.parent,
        policy_version=policy.version,
        ignored_evidence=tuple(ignored),
        evidence=tuple(sorted(used)),
        evidence_signatures=signature_files(used),
        used_overrides=tuple(decision.used_overrides),
        used_removals=tuple(decision.used_removals),
        admitted={n: tuple(a) for n, a in decision.admitted.items()},
        moved_from={n: a.moved_from for n, a in adds.items() if a.moved_from},
        removes=tuple(sorted(set(removes))),
        replaced=tuple(
            sorted(
                old.filename
                for n in names
                if (old := state.holds(repo, arch, n)) is not None
                and (n not in adds or adds[n].record.filename != old.filename)
            )
        ),
    )
    if reasons:
        return WorkerOutput(replace(summary, reasons=tuple(reasons)), {})
    sigs = {n: state.signatures[a.record.sha256] for n, a in adds.items()}
    return _written(job, kind, packages, adds, sigs, removes, summary)


def run_adoption(job: JobInput) -> WorkerOutput:
    """The first databases of a repository the enclave never signed, from an existing
    repository's files named by an admin-signed adoption statement. With a packagers'
    keyring (the job's "keyring" blob, the one the statement names by sha256), each file's
    packager signature (``FILE.sig``) must verify with it and becomes its ``%PGPSIG%``;
    without one, the entries carry none (pacman checks the packager's ``.sig`` beside the
    file against its own keyring)."""
    from reposeal.openpgp.verify import Keyring, verify_detached
    from reposeal.policy.decide import decide_adoption

    spec, policy = job.spec, job.policy
    repo, arch = spec.repo, spec.arch
    kind = _compression(spec)
    files, removes = _proposed(spec)
    if removes or any(m is not None for _, m in files):
        raise ReposealError("an adoption only adds files")
    reasons: list[str] = []
    packages, adds = _read_all(job, files, reasons)
    state = job.state(set(adds), set(), {a.record.sha256 for a in adds.values()})
    evidence, ignored, used = evidence_of(job)
    keyring_raw = job.read("job", "keyring", 64 << 20)
    keyring_sha = hashlib.sha256(keyring_raw).hexdigest() if keyring_raw else None
    sigs: dict[str, str] = {}
    verified: set[str] = set()
    if keyring_raw:
        keyring = Keyring.from_bytes(keyring_raw)
        for name, add in adds.items():
            rec = add.record
            sig = job.read("packages", rec.filename + ".sig", MAX_PACKAGER_SIG)
            opened = job.open("packages", rec.filename)
            if sig is None or opened is None:
                continue  # decide says which file lacks it
            with opened:  # read whole already (``_read``), within the package limits
                data = opened.read()
            try:
                verify_detached(data, sig, keyring)
            except ReposealError as exc:
                reasons.append(f"{rec.filename}: the packager signature does not verify: {exc}")
                continue
            verified.add(rec.sha256)
            sigs[name] = base64.b64encode(sig).decode()
    t = Transition(repo, arch, None, adds, ())
    decision = decide_adoption(state, t, evidence, policy, frozenset(verified), keyring_sha)
    reasons += decision.reasons
    summary = Decision(
        "refuse",
        repo=repo,
        arch=arch,
        policy_version=policy.version,
        ignored_evidence=tuple(ignored),
        evidence=tuple(sorted(used)),
        evidence_signatures=signature_files(used),
        used_overrides=tuple(decision.used_overrides),
        adoption=True,
        package_signatures={adds[n].record.sha256: s for n, s in sorted(sigs.items())},
    )
    if reasons:
        return WorkerOutput(replace(summary, reasons=tuple(reasons)), {})
    return _written(job, kind, packages, adds, sigs, [], summary)


def _written(
    job: JobInput,
    kind: str,
    packages: dict[str, Package],
    adds: dict[str, Addition],
    sigs: dict[str, str],
    removes: list[str],
    summary: Decision,
) -> WorkerOutput:
    """Render the new entries (``sigs``: name -> %PGPSIG%), write the databases, read them
    back with pacman's libraries, and answer."""
    entries = {}
    meant_new = {}
    for name, pkg in packages.items():
        facts = replace(pkg.facts, pgpsig=sigs.get(name, ""))
        entry = Entry.from_package(facts, pkg.files)
        entries[name] = entry
        meant_new[entry.dirname] = Meant(
            entry.dirname, entry.desc, entry.files or b"", facts, pkg.files
        )
    written = _write(job, kind, entries, removes)
    meant = [
        meant_new.get(e.dirname) or Meant(e.dirname, e.desc, e.files or b"")
        for e in written.rewritten
    ]
    problems = read_back(written.fresh_db, written.fresh_files, meant)
    if problems:
        return WorkerOutput(replace(summary, reasons=tuple(problems)), {})
    records = [record_to_json(adds[n].record, entries[n]) for n in sorted(adds)]
    out = {
        "records": canonical.dumps(records),
        "db": written.db,
        "files": written.files,
        "index": written.index,
    }
    digest = {k: hashlib.sha256(v).hexdigest() for k, v in out.items()}
    accepted = replace(
        summary,
        decision="accept",
        records_sha256=digest["records"],
        db_sha256=digest["db"],
        files_sha256=digest["files"],
        index_sha256=digest["index"],
    )
    return WorkerOutput(accepted, out)


def signature_files(used: Mapping[str, Iterable[str]]) -> dict[str, tuple[str, ...]]:
    """For each statement a decision used, the signature files it came with (sorted)."""
    return {d: tuple(sorted(v)) for d, v in sorted(used.items())}


@dataclass(frozen=True)
class Written:
    db: bytes
    files: bytes
    index: bytes
    rewritten: list[Entry]  # every entry of the rewritten chunks
    fresh_db: bytes  # the rewritten chunks alone, as an archive
    fresh_files: bytes


def _write(job: JobInput, kind: str, entries: dict[str, Entry], removes: list[str]) -> Written:
    """The new databases: the parent's chunks, with those the change touches rewritten."""
    chunks = _parent_chunks(job, kind)
    touched = chunked.affected(chunks, [*entries, *removes])
    where = {"db": "the enclave's parent database", "files": "its files database"}
    subset = chunked.read_chunks([chunks[i] for i in touched], kind, where) if chunks else {}
    for name in removes:
        subset.pop(name, None)
    subset.update(entries)
    new = (
        chunked.rechunk(chunks, touched, subset.values(), kind)
        if chunks
        else (chunked.make_chunks(subset.values(), kind))
    )
    kept = {id(c) for c in chunks}
    fresh = [c for c in new if id(c) not in kept]
    db, files = chunked.assemble(new, "db", kind), chunked.assemble(new, "files", kind)
    index = chunked.index_document(new, kind, {"db": db, "files": files})
    end = chunked.end_member(kind)
    ordered = sorted(subset.values(), key=lambda e: e.dirname.encode())
    return Written(
        db,
        files,
        json.dumps(index, separators=(",", ":"), sort_keys=True).encode(),
        ordered,
        b"".join(c.db for c in fresh) + end,
        b"".join(c.files for c in fresh) + end,
    )
