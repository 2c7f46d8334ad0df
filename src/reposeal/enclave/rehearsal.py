"""The rebuild rehearsal: what makes "rebuild the machine regularly" safe. A timer (on a
spare host, or on the enclave host into a scratch folder) rebuilds the enclave's state from
a mirror the way a real rebuild would (`enclave restore`, auditor's copy), audits it, and
compares it with the live enclave: the same log (the rebuilt tree is the live one's at that
size: same root), the same policy in force, the same signing key. Any difference is an
alert; the live enclave is only read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from reposeal.alpm.limits import MAX_LAG
from reposeal.translog.store import TransparencyLog


@dataclass(frozen=True)
class LogState:
    size: int
    root: bytes  # of the whole tree
    genesis: bytes  # entry 0: the log's key, origin and first policy
    policy: str | None  # sha256 of the policy in force


@dataclass
class Rehearsal:
    rebuilt: LogState
    live_size: int
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def compare(rebuilt: LogState, live_root_at: bytes | None, live: LogState) -> list[str]:
    """What differs between the rebuilt state and the live one (pure). ``live_root_at``:
    the live tree's root at the rebuilt size (None when the live log is smaller)."""
    problems = []
    if rebuilt.genesis != live.genesis:
        problems.append("the rebuilt log starts with another genesis entry (key, origin)")
    if live_root_at is None:
        problems.append(
            f"the mirror's log has {rebuilt.size} entries, more than the live one's "
            f"{live.size}: it holds entries this enclave never wrote"
        )
    elif live_root_at != rebuilt.root:
        problems.append(
            f"the rebuilt tree of {rebuilt.size} entries has another root than the live "
            "log at that size: the mirror's log is not this enclave's"
        )
    if live.size - rebuilt.size > MAX_LAG:
        problems.append(f"the mirror is {live.size - rebuilt.size} entries behind the live log")
    if rebuilt.size == live.size and rebuilt.policy != live.policy:
        problems.append("the policy in force differs")
    return problems


def state_of(home: Path) -> LogState:
    """The size, root, genesis and policy in force of a home's log (read only)."""
    import json

    with TransparencyLog(home / "log.sqlite") as log:
        size = log.size
        policy = None
        for i in range(size):
            doc = json.loads(log.entry(i))
            if doc.get("type") in ("genesis", "policy") and isinstance(
                doc.get("policy_sha256"), str
            ):
                policy = doc["policy_sha256"]
        return LogState(size, log.root(size), log.entry(0) if size else b"", policy)


def root_at(home: Path, size: int) -> bytes | None:
    with TransparencyLog(home / "log.sqlite") as log:
        return log.root(size) if size <= log.size else None


def rehearse(live: Path, rebuilt: Path) -> Rehearsal:
    """Compare a rebuilt copy (already restored and audited) with the live home."""
    got, now = state_of(rebuilt), state_of(live)
    return Rehearsal(got, now.size, compare(got, root_at(live, got.size), now))
