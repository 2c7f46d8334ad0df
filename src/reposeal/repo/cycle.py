"""The update cycle: from approved, attested builds to a signed database on the mirror.

Per repository and architecture, one cycle at a time, under the database lock. A cycle
takes every ready source (``Intake.readiness``) not yet published there, and goes through
its steps; each step is recorded before the next starts, and each can be repeated, so a
cycle killed at any point finishes when ``advance`` runs again, with nothing published twice:

    sign-packages  the enclave signs the package files (a bridge job, answered later)
    pool           packages and their signatures go to the mirror (new names: invisible to
                   pacman until a database names them)
    propose        the enclave is asked for the transition from the published database (the
                   files to add or move up, the names to remove); it writes, checks and signs
                   the new sync and files databases itself and answers with the chunks that
                   changed, which are put together with the published ones and kept with the
                   cycle. The repo machine never writes a database the enclave signs.
    publish        databases and signatures replace the old ones in one atomic switch
    log            once the enclave has pushed its log that far (see ``logmirror``), the log
                   tiles and then the checkpoint go to MIRROR/log
    done           (or failed: the enclave refused, and said why)

``advance`` never waits: a step that needs the enclave's answer returns, and the next call
picks it up. `reposeal repo serve` calls it after every change and on a timer.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reposeal import logs
from reposeal.errors import ReposealError
from reposeal.evidence.statements import Approval, Build, from_bytes
from reposeal.faults import fault_point
from reposeal.fsio import atomic_write, write_all
from reposeal.policy.document import Policy
from reposeal.protocol.answers import JobResult, MalformedAnswerError
from reposeal.protocol.lock import database_lock
from reposeal.repo.adoption import ADOPTION
from reposeal.repo.bridge import JobQueue
from reposeal.repo.cycles import REMOVAL, Cycle, Cycles
from reposeal.repo.dbupdate import publish_staged
from reposeal.repo.expiry import DAY, expiries
from reposeal.repo.intake import Intake, Waiting
from reposeal.repo.logmirror import LogCopy
from reposeal.repo.move import MOVE, plan_moves
from reposeal.repo.plans import CyclePlan
from reposeal.repo.witnessing import Witnessed, WitnessState, witness


@dataclass
class Machine:
    """What a cycle works with: the intake, the bridge queue, the mirror, the policy."""

    intake: Intake
    queue: JobQueue
    cycles: Cycles
    mirror: Path
    policy: Policy
    log: LogCopy
    compression: str = ".gz"
    exported: tuple[int, str, bool] = (-1, "", False)  # size, note, signed: last exported
    rewitness: float = 3600.0  # seconds after which cosignatures on the head are renewed
    witnessed: Witnessed | None = None  # what the witnesses said last

    def db_path(self, repo: str, arch: str) -> Path:
        return self.mirror / repo / "os" / arch / f"{repo}.db.tar{self.compression}"

    def files_path(self, repo: str, arch: str) -> Path:
        return self.mirror / repo / "os" / arch / f"{repo}.files.tar{self.compression}"

    def staging(self, cycle: Cycle) -> Path:
        return self.cycles.folder / "staging" / cycle.id


def _targets(w: Waiting, policy: Policy) -> dict[tuple[str, str], Waiting]:
    """Where a source's packages go, as (repo, arch) -> that part of the source: debug
    packages to the repository's -debug twin (when the policy has one), each package to its
    architecture, architecture-independent ones to every architecture of the repository."""
    out: dict[tuple[str, str], Waiting] = {}
    for name, rec in w.packages.items():
        repo = w.repo
        if name.endswith("-debug") and policy.rule(f"{w.repo}-debug") is not None:
            repo = f"{w.repo}-debug"
        rule = policy.rule(repo)
        arches = [rec.arch] if rec.arch != "any" else sorted(rule.arches) if rule else []
        for arch in arches:
            part = out.setdefault((repo, arch), Waiting(repo, w.pkgbase, w.commit, {}, w.missing))
            part.packages[name] = rec
    return out


def _as_job_files(m: Machine, raw: bytes, sigs: bytes) -> dict[str, str]:
    """A statement and its signatures as job files (kept as blobs by their hash)."""
    files: dict[str, str] = {}
    for data, suffix in ((raw, ".json"), (sigs, ".json.sig")):
        digest = hashlib.sha256(data).hexdigest()
        if not (m.queue.blobs / digest).exists():
            atomic_write(m.queue.blobs / digest, data)
        files[f"evidence/{hashlib.sha256(raw).hexdigest()}{suffix}"] = digest
    return files


def _evidence(m: Machine, base: str, commit: str) -> dict[str, str]:
    """The approvals and builds behind a source, as job files."""
    files: dict[str, str] = {}
    rows = m.intake.db.execute(
        "SELECT raw, sigs FROM statement WHERE pkgbase=? AND commit_id=?", (base, commit)
    ).fetchall()
    for raw, sigs in rows:
        stmt = from_bytes(bytes(raw))
        if isinstance(stmt, (Approval, Build)):
            files |= _as_job_files(m, bytes(raw), bytes(sigs))
        if isinstance(stmt, Approval) and m.intake.pkgbuild_text(stmt.pkgbuild_sha256):
            # the approved text: the enclave keeps it for the mirrors if its hash is right
            files[f"evidence/{stmt.pkgbuild_sha256}.PKGBUILD"] = stmt.pkgbuild_sha256
    return files


def _statement_files(m: Machine, digest: str) -> dict[str, str]:
    row = m.intake.db.execute(
        "SELECT raw, sigs FROM statement WHERE sha256=?", (digest,)
    ).fetchone()
    return _as_job_files(m, bytes(row[0]), bytes(row[1]))


def machine(folder: Path, mirror: Path, policy: Policy) -> Machine:
    """The repo machine's parts as `repo serve --dir FOLDER` keeps them."""
    queue = JobQueue(folder / "queue")
    return Machine(
        Intake(folder / "intake", queue.blobs),
        queue,
        Cycles(folder / "cycles"),
        mirror,
        policy,
        LogCopy(queue.folder / "log"),
    )


def witness_head(m: Machine) -> Witnessed | None:
    """Cosignatures on the log copy's newest checkpoint from the policy's witnesses (None
    when the policy names none)."""
    if not m.policy.witnesses:
        return None
    _, note = m.log.signed_head()
    if note is None:
        return None
    state = WitnessState.load(m.log.folder / "witnesses.json")
    policy = m.policy.witness_policy()
    got = witness(m.log.cosigned(note), policy, state, m.log.consistency_proof,
                  rewitness=m.rewitness)  # fmt: skip
    m.log.keep_cosigned(note, got.note)
    if not got.meets(policy) and (m.witnessed is None or m.witnessed.missing != got.missing):
        logs.warning("repo", "witness", outcome="missing cosignatures", missing=got.missing)
    m.witnessed = got
    return got


def export_log(m: Machine) -> bool:
    """Tiles and checkpoint of the log copy to MIRROR/log, if it changed since last time,
    and only with the policy's quorum of witness cosignatures; True if the mirror shows the
    copy's head."""
    got = witness_head(m)
    if got is not None and not got.meets(m.policy.witness_policy()):
        return False  # nothing unwitnessed reaches the mirror
    size, signed = m.log.signed_head()
    note = m.log.cosigned(signed) if signed is not None else None
    # exported again once the enclave's signature of it arrives (it may come after)
    now = (size, hashlib.sha256(note or b"").hexdigest(),
           signed is not None and m.log.has_signature(signed))  # fmt: skip
    if now != m.exported:
        m.log.export(m.mirror / "log")
        m.exported = now
    return True


def plan_cycles(m: Machine) -> list[Cycle]:
    """Start a cycle for each repo/arch that has ready sources and no cycle under way."""
    ready: dict[tuple[str, str], list[Waiting]] = {}
    for w in m.intake.readiness(m.policy):
        if w.missing:
            continue
        for (repo, arch), part in _targets(w, m.policy).items():
            if m.cycles.is_published(repo, arch, w.pkgbase, w.commit):
                continue
            ready.setdefault((repo, arch), []).append(part)
    removals: dict[tuple[str, str], list[tuple[str, list[str]]]] = {}
    for stmt, digest, missing in m.intake.removals(m.policy):
        rule = m.policy.rule(stmt.repo)
        for arch in sorted(rule.arches) if rule and not missing else []:
            if not m.cycles.is_published(stmt.repo, arch, REMOVAL, digest):
                removals.setdefault((stmt.repo, arch), []).append((digest, list(stmt.pkgnames)))
    started = []
    for repo, arch in sorted(set(ready) | set(removals)):
        if m.cycles.active(repo, arch) is not None:
            continue  # the next cycle batches what arrives meanwhile
        sources = _takeable(m, repo, arch, ready.get((repo, arch), []))
        if not sources and not removals.get((repo, arch)):
            continue
        packages: dict[str, str] = {}
        evidence: dict[str, str] = {}
        for w in sources:
            packages |= {r.filename: r.sha256 for r in w.packages.values()}
            evidence |= _evidence(m, w.pkgbase, w.commit)
        remove: list[str] = []
        for digest, names in removals.get((repo, arch), []):
            remove += [n for n in names if n not in remove]
            evidence |= _statement_files(m, digest)
        plan = CyclePlan(
            tuple(sorted([(w.pkgbase, w.commit) for w in sources]
                         + [(REMOVAL, d) for d, _ in removals.get((repo, arch), [])])),
            packages, tuple(remove), evidence,
        )  # fmt: skip
        started.append(m.cycles.create(repo, arch, plan))
        fault_point("cycle-planned")
    for repo, arch, plan in plan_moves(m):
        if m.cycles.active(repo, arch) is None:
            started.append(m.cycles.create(repo, arch, plan))
            fault_point("cycle-planned")
    return started


def _takeable(m: Machine, repo: str, arch: str, sources: list[Waiting]) -> list[Waiting]:
    """The ready sources a new cycle takes: not those parked after a refusal (unless their
    evidence changed since), then only the newest version of each pkgbase (an older one
    waiting beside it goes later, and is refused then if it is below), and a source refused
    in a batch on its own first."""
    from reposeal.alpm.vercmp import vercmp

    candidates: list[tuple[Waiting, bool]] = []  # (source, to be tried alone)
    for w in sources:
        parked = m.cycles.parked(repo, arch, w.pkgbase, w.commit)
        if parked is None:
            candidates.append((w, False))
        elif sorted(_evidence(m, w.pkgbase, w.commit)) != parked[1]:
            m.cycles.unpark(repo, arch, w.pkgbase, w.commit)  # new evidence: try again
            candidates.append((w, False))
        elif not parked[0]:
            candidates.append((w, True))
    for w, alone in candidates:
        if alone:
            return [w]  # refused in a batch: tried alone, before anything else
    newest: dict[str, Waiting] = {}
    for w, _ in candidates:
        held = newest.get(w.pkgbase)
        if held is None or vercmp(_version(w), _version(held)) > 0:
            newest[w.pkgbase] = w
    return list(newest.values())


def _version(w: Waiting) -> str:
    return next(iter(w.packages.values())).version if w.packages else ""


def _park(m: Machine, cycle: Cycle) -> None:
    """Park the sources of a refused cycle (see ``Cycles.park``)."""
    sources = [(b, c) for b, c in cycle.plan.sources if b not in (REMOVAL, MOVE, ADOPTION)]
    m.cycles.park(cycle, {(b, c): sorted(_evidence(m, b, c)) for b, c in sources})


def _job_files(cycle: Cycle) -> dict[str, str]:
    files = {f"packages/{name}": str(sha) for name, sha in cycle.plan.packages.items()}
    evidence = dict(cycle.plan.evidence)
    return files | evidence


def _transition_job(m: Machine, cycle: Cycle, db: Path) -> dict[str, Any]:
    """The transition a cycle proposes: from the published database (the enclave refuses
    it unless that is the last one it signed), the files to add (or, for a move, to take
    from the lower layer) and the names to remove."""
    names = sorted(cycle.plan.packages)
    frm = cycle.plan.moved_from
    adopt = cycle.plan.adopt
    return {
        "id": f"{cycle.id}-db",
        "kind": "adopt" if adopt else "transition",
        "repo": cycle.repo,
        "arch": cycle.arch,
        "parent": None if adopt else _published_sha(db),
        "add": [] if frm else names,
        "moves": [{"file": n, "from": frm} for n in names] if frm else [],
        "remove": sorted(cycle.plan.remove),
        "compression": m.compression,
        "files": _job_files(cycle),
    }


def _assembled(m: Machine, cycle: Cycle, db: Path, result: JobResult) -> dict[str, bytes]:
    """The databases the enclave wrote, from the chunks it sent and the published ones it
    kept, with their signatures and index: checked against the hashes it signed."""
    from reposeal.alpm import chunked
    from reposeal.alpm.compression import SUFFIX_TO_KIND
    from reposeal.repo.paths import RepoPaths

    answer = result.databases
    if answer is None or result.signature is None or result.files_signature is None:
        raise ReposealError("the enclave accepted without sending its databases and signatures")
    paths = RepoPaths.from_db_path(db)
    index = answer.index
    doc = json.loads(index)
    pieces = dict(answer.chunks)
    files_db = m.files_path(cycle.repo, cycle.arch)
    current = paths.current / paths.index_name
    if db.exists() and files_db.exists() and current.exists():
        published = {"db": db.read_bytes(), "files": files_db.read_bytes()}
        pieces = chunked.pieces(json.loads(current.read_bytes()), published) | pieces
    kind = SUFFIX_TO_KIND[m.compression]
    try:
        out = {
            db.name: chunked.rebuild(doc, "db", pieces, kind),
            files_db.name: chunked.rebuild(doc, "files", pieces, kind),
        }
    except KeyError:
        raise ReposealError(
            "the enclave's answer needs chunks of a database this machine does not hold; "
            "restore the published generation"
        ) from None
    if (
        hashlib.sha256(out[db.name]).hexdigest() != answer.db_sha256
        or hashlib.sha256(out[files_db.name]).hexdigest() != answer.files_sha256
    ):
        raise ReposealError("the databases put together do not match what the enclave signed")
    out[db.name + ".sig"] = result.signature
    out[files_db.name + ".sig"] = result.files_signature
    out[paths.index_name] = index
    return out


def _answer(m: Machine, job: dict[str, Any]) -> JobResult | None:
    """Queue ``job`` (idempotent) and return the enclave's answer, if it has come (one
    that is not an answer the enclave writes counts as a refusal, and says why)."""
    m.queue.submit(job)
    fault_point(f"submitted-{job['kind']}")
    found = m.queue.get(str(job["id"]))
    result = None if found is None else found.get("result")
    if result is None:
        return None
    try:
        return JobResult.from_json(result)
    except MalformedAnswerError as exc:
        return JobResult.refused(str(job["id"]), f"the enclave's answer is malformed: {exc}")


def _published_sha(db: Path) -> str | None:
    return hashlib.sha256(db.read_bytes()).hexdigest() if db.exists() else None


def _archive(m: Machine, pool: Path, files: list[str]) -> None:
    """Move package files no database names any more (and their signatures) to
    MIRROR/archive/packages/L/NAME/, as Arch's archive keeps them: old versions stay
    installable on purpose, never by accident. Repeatable: a moved file is skipped."""
    from reposeal.alpm.names import check_name, check_package_filename

    for name in files:
        try:  # NAME-PKGVER-PKGREL-ARCH.pkg.tar.EXT
            stem = check_package_filename(name).split(".pkg.tar", 1)[0]
            pkgname = check_name(stem.rsplit("-", 3)[0])
        except ReposealError:
            continue
        target = m.mirror / "archive" / "packages" / pkgname[0] / pkgname
        for f in (pool / name, pool / (name + ".sig")):
            if f.exists():
                target.mkdir(parents=True, exist_ok=True)
                f.replace(target / f.name)


def step(m: Machine, cycle: Cycle) -> bool:
    """Do the cycle's next step if it can be done now; True if it moved on."""
    db = m.db_path(cycle.repo, cycle.arch)
    pool = db.parent
    if cycle.step == "sign-packages" and not cycle.plan.packages:
        cycle.step = "propose"  # a removal only: nothing to sign or to pool
    elif cycle.step == "sign-packages" and cycle.plan.adopt:
        cycle.detail["package_signatures"] = dict(cycle.plan.package_signatures)  # packagers'
        cycle.step = "pool"
    elif cycle.step == "sign-packages" and cycle.plan.moved_from:
        cycle.detail["package_signatures"] = dict(cycle.plan.package_signatures)  # signed already
        cycle.step = "pool"
    elif cycle.step == "sign-packages":
        job = {
            "id": f"{cycle.id}-packages",
            "kind": "packages",
            "repo": cycle.repo,
            "arch": cycle.arch,
            "files": _job_files(cycle),
        }
        result = _answer(m, job)
        if result is None:
            return False
        if not result.accepted:
            cycle.step, cycle.detail["reasons"] = "failed", result.reasons
            _park(m, cycle)
        else:
            cycle.detail["package_signatures"] = {
                n: base64.b64encode(sig).decode() for n, sig in result.package_signatures.items()
            }
            cycle.step = "pool"
        fault_point("packages-answered")
    elif cycle.step == "pool":
        pool.mkdir(parents=True, exist_ok=True)
        files: dict[Path, bytes] = {}
        for name, sha in cycle.plan.packages.items():
            if not (pool / name).exists():
                files[pool / name] = (m.queue.blobs / sha).read_bytes()
            sig = cycle.detail["package_signatures"].get(name)
            if sig is not None:  # (an adopted file may have none: pacman then asks for none)
                files[pool / (name + ".sig")] = base64.b64decode(sig)
        write_all(files)
        fault_point("pool-written")
        cycle.step = "propose"
    elif cycle.step == "propose":
        result = _answer(m, _transition_job(m, cycle, db))
        if result is None:
            return False
        if not result.accepted or result.databases is None:
            cycle.step, cycle.detail["reasons"] = "failed", result.reasons
            _park(m, cycle)
        else:
            staged = _assembled(m, cycle, db, result)
            staging = m.staging(cycle)
            write_all({staging / name: data for name, data in staged.items()})
            cycle.detail["staged"] = sorted(staged)
            cycle.detail["superseded"] = sorted(result.databases.replaced)
            cycle.detail["db_sha256"] = result.databases.db_sha256
            cycle.detail["log_index"] = result.log_index
            fault_point("db-answered")
            cycle.step = "witness"
    elif cycle.step == "witness":  # the log entry of this database, cosigned, comes first
        if m.log.size <= int(cycle.detail.get("log_index", -1)):
            return False  # the enclave has not pushed its log that far yet
        if not export_log(m):
            missing = dict(m.witnessed.missing) if m.witnessed else {}
            if cycle.detail.get("witnesses_missing") != missing:
                cycle.detail["witnesses_missing"] = missing
                m.cycles.save(cycle)
            return False
        cycle.detail.pop("witnesses_missing", None)
        cycle.step = "publish"
    elif cycle.step == "publish":
        staging = m.staging(cycle)
        if _published_sha(db) != cycle.detail["db_sha256"]:  # not already (crash after it)
            files_out = {n: (staging / n).read_bytes() for n in cycle.detail["staged"]}
            index = cycle.detail.get("log_index")
            proof = m.log.tlog_proof(int(index)) if index is not None else None
            if proof is not None:  # logged and (with witnesses) cosigned: checkable offline
                files_out[db.name + ".tlog-proof"] = proof
            publish_staged(db, files_out, wait=60)
            fault_point("published")
        _archive(m, pool, cycle.detail.get("superseded", []))
        cycle.step = "log"
    elif cycle.step == "log":
        if m.log.size <= int(cycle.detail.get("log_index", -1)):
            return False  # the enclave has not pushed its log that far yet
        if not export_log(m):
            return False
        fault_point("log-exported")
        cycle.step = "done"
    else:
        return False
    m.cycles.save(cycle)
    fault_point(f"saved-{cycle.step}")
    _log_step(cycle)
    return True


def _log_step(cycle: Cycle) -> None:
    where = {"cycle": cycle.id, "repo": cycle.repo, "arch": cycle.arch}
    if cycle.step == "failed":
        logs.warning("repo", "refused", **where, reasons=cycle.detail.get("reasons", []))
    else:
        logs.info("repo", "cycle", **where, step=cycle.step)


def refresh(m: Machine, before: float) -> list[dict[str, Any]]:
    """Have the enclave re-sign every published database whose signature expires within
    ``before`` seconds, and publish each new signature beside the unchanged database. The
    job is named by the old signature: asked again, it is the same job."""
    done = []
    for e in expiries(m.mirror):
        if e.seconds_left > before or m.cycles.active(e.repo, e.arch) is not None:
            continue
        digest = hashlib.sha256(e.db.read_bytes()).hexdigest()
        files_db = e.db.with_name(e.db.name.replace(".db.tar", ".files.tar", 1))
        job_id = f"refresh-{e.repo}-{e.arch}-{hashlib.sha256(e.signature).hexdigest()[:32]}"
        job = {"id": job_id, "kind": "refresh", "repo": e.repo, "arch": e.arch,
               "expect": digest, "files": {}}  # fmt: skip
        result = _answer(m, job)
        if result is None or not result.accepted or result.signature is None:
            done.append(
                {
                    "job": job_id,
                    **e.to_json(),
                    "state": "waiting"
                    if result is None
                    else "refused: " + "; ".join(result.reasons),
                }
            )
            continue
        if hashlib.sha256(e.db.read_bytes()).hexdigest() == digest:  # still the same
            generation = e.db.parent / f"{e.repo}.current"
            files = {p.name: p.read_bytes() for p in generation.iterdir()}
            files[e.db.name + ".sig"] = result.signature
            if result.files_signature:
                files[files_db.name + ".sig"] = result.files_signature
            publish_staged(e.db, files, wait=60)
        done.append({"job": job_id, **e.to_json(), "state": "refreshed"})
    return done


def advance(m: Machine, refresh_before: float = 3 * DAY) -> list[Cycle]:
    """Start what is ready, take every cycle as far as it can go now, and refresh database
    signatures that expire within ``refresh_before`` seconds. One runner at a time (`repo
    serve` and `repo cycle` may both call this)."""
    with database_lock(m.cycles.folder / "cycles.lck", wait=60):
        return _advance(m, refresh_before)


def _advance(m: Machine, refresh_before: float) -> list[Cycle]:
    refresh(m, refresh_before)
    plan_cycles(m)
    moved = []
    for c in m.cycles.all(1000):
        if c.step in ("done", "failed"):
            continue
        while step(m, c):
            pass
        moved.append(c)
    export_log(m)  # refreshes and refusals are logged too
    return moved
