"""The sandboxed worker's decision: reads one job's bytes, derives every fact, applies the
policy. It runs in a process forked for this one job inside bubblewrap (see ``zygote``),
holds no key and signs nothing. Any malformed input ends as a refusal with a typed reason,
never a crash of the enclave.

Job kinds: "packages" (sign package files) and "transition" (write and check the next
databases of a repository, see ``transition``).
"""

from __future__ import annotations

from pathlib import Path

from reposeal import canonical
from reposeal.alpm.crosscheck import disagreements
from reposeal.alpm.package import read_package
from reposeal.enclave.decision import Decision
from reposeal.enclave.transition import (
    WorkerOutput,
    record_of,
    record_to_json,
    run_adoption,
    run_transition,
    signature_files,
)
from reposeal.enclave.worker_io import JobInput, evidence_of
from reposeal.errors import ReposealError
from reposeal.policy.decide import decide_packages
from reposeal.policy.state import PackageRecord


def _record_of_file(job: JobInput, name: str) -> PackageRecord:
    """A package record from the package file alone (read by reposeal and libarchive)."""
    opened = job.open("packages", name)
    if opened is None:
        raise ReposealError("the package file was not sent", path=name)
    with opened:
        pkg = read_package(Path(name), opened=opened)
        problems = disagreements(opened, pkg)
    if problems:
        raise ReposealError("; ".join(problems), path=name)
    return record_of(pkg, name)


def run_packages(job: JobInput) -> WorkerOutput:
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
    evidence, ignored, used = evidence_of(job)
    state = job.state(records)
    decision = decide_packages(state, spec.repo, records, evidence, policy)
    reasons += decision.reasons
    listed = [record_to_json(r) for r in sorted(records.values(), key=lambda r: r.name)]
    return WorkerOutput(
        Decision(
            "refuse" if reasons or not records else "accept",
            tuple(reasons or ([] if records else ["no package files in the job"])),
            ignored_evidence=tuple(ignored),
            repo=spec.repo,
            policy_version=policy.version,
            evidence=tuple(sorted(used)),
            evidence_signatures=signature_files(used),
        ),
        {"records": canonical.dumps(listed)},
    )


def run(job: JobInput) -> WorkerOutput:
    kind = job.spec.kind
    if kind == "packages":
        return run_packages(job)
    if kind == "transition":
        return run_transition(job)
    if kind == "adopt":
        return run_adoption(job)
    raise ReposealError(f"unknown job kind {kind!r}")


def decide_job(job: JobInput) -> WorkerOutput:
    """``run``, with every failure turned into a refusal that says why."""
    try:
        return run(job)
    except ReposealError as exc:
        return WorkerOutput(Decision.refusal(str(exc)), {})
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return WorkerOutput(Decision.refusal(f"malformed job: {exc}"), {})
