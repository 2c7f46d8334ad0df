"""The source machine's decisions (pure): when a commit has its approvals, who wrote it, and
where two builders' results differ."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from reposeal.evidence.quorum import Signed
from reposeal.evidence.statements import Approval

_EMAIL = re.compile(r"<([^<>@\s]+@[^<>\s]+)>")


def author_key(email: str, maintainers: Iterable[tuple[str, Iterable[str]]]) -> str | None:
    """The fingerprint of the maintainer whose certificate has a user ID with ``email``
    (``maintainers``: (fingerprint, user IDs) pairs); None for anyone else."""
    wanted = email.strip().lower()
    for fpr, uids in maintainers:
        for uid in uids:
            m = _EMAIL.search(uid)
            if m and m.group(1).lower() == wanted:
                return fpr.upper()
    return None


@dataclass(frozen=True)
class Tally:
    """Approvals of one commit for one repository."""

    repo: str
    signers: frozenset[str]  # maintainer keys that count
    excluded: frozenset[str]  # valid, but the change's author (the policy excludes them)
    needed: int

    @property
    def reached(self) -> bool:
        return len(self.signers) >= self.needed

    def missing(self) -> list[str]:
        if self.reached:
            return []
        why = f"{self.needed - len(self.signers)} more maintainer approvals for {self.repo}"
        if self.excluded:
            why += " (the author's own approval does not count)"
        return [why]


def tally(
    approvals: Iterable[Signed],
    repo: str,
    author: str | None,
    needed: int,
    exclude_author: bool,
) -> Tally:
    """Distinct maintainer keys approving for ``repo``; the author's only if the policy lets
    them approve their own change."""
    keys: set[str] = set()
    for s in approvals:
        if isinstance(s.statement, Approval) and s.statement.repo == repo:
            keys |= s.signers
    excluded = {author} & keys if (exclude_author and author) else set()
    return Tally(repo, frozenset(keys - excluded), frozenset(excluded), needed)


Contents = Mapping[str, str]  # path in the package -> sha256 (or "dir", "link:TARGET")
Report = Mapping[str, tuple[str, Contents]]  # package file name -> (sha256, contents)


def differences(reports: Mapping[str, Report]) -> list[str]:
    """Where builders disagree, one line per difference, naming the files inside the
    packages that differ; empty when every builder made byte-identical packages."""
    out: list[str] = []
    names = sorted(reports)
    for a, b in itertools.pairwise(names):
        ra, rb = reports[a], reports[b]
        for filename in sorted(set(ra) | set(rb)):
            if filename not in ra or filename not in rb:
                who = a if filename in ra else b
                out.append(f"{filename}: only {who} made it")
                continue
            (sha_a, ca), (sha_b, cb) = ra[filename], rb[filename]
            if sha_a == sha_b:
                continue
            changed = sorted(p for p in set(ca) & set(cb) if ca[p] != cb[p])
            only_a = sorted(set(ca) - set(cb))
            only_b = sorted(set(cb) - set(ca))
            parts = []
            if changed:
                parts.append("content differs in " + ", ".join(changed[:20]))
            if only_a:
                parts.append(f"only {a} has " + ", ".join(only_a[:20]))
            if only_b:
                parts.append(f"only {b} has " + ", ".join(only_b[:20]))
            detail = "; ".join(parts) or "same files, different archive bytes"
            out.append(f"{filename}: {a} and {b} differ: {detail}")
    return out
