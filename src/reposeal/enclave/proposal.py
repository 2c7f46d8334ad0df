"""A proposed transition, as the repo machine asks for it, and whether it starts from the
databases the enclave signed last (a stale or forked request is refused before any work)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reposeal.enclave.home import SignedDatabases

UNSET: Any = object()


@dataclass(frozen=True)
class Proposal:
    """A proposed transition of one repository/architecture, as the repo machine asks:
    package files to add (in ``packages``), files moving from a lower layer (file, layer),
    names to remove. ``parent``: the database the requester believes the enclave signed
    last (None: the first; UNSET: not checked)."""

    repo: str
    arch: str
    add: tuple[str, ...] = ()
    moves: tuple[tuple[str, str], ...] = ()
    remove: tuple[str, ...] = ()
    parent: Any = UNSET
    compression: str = ".gz"
    adopt: bool = False  # the first databases, from an existing repository's files

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "adopt" if self.adopt else "transition",
            "repo": self.repo,
            "arch": self.arch,
            "add": sorted(self.add),
            "moves": [{"file": f, "from": r} for f, r in sorted(self.moves)],
            "remove": sorted(self.remove),
            "compression": self.compression,
            **({} if self.parent is UNSET else {"parent": self.parent}),
        }


def stale_reason(p: Proposal, last: SignedDatabases | None) -> str | None:
    """Why the proposal does not start from the last databases signed (None: it does)."""
    if p.adopt and last is not None:
        return (
            f"{p.repo}/{p.arch} has a signed database already: only a repository the enclave "
            "never signed can be adopted"
        )
    if p.parent is not UNSET and p.parent != (last.db if last else None):
        return (
            f"parent {p.parent or 'none'} is not the last database signed for "
            f"{p.repo}/{p.arch} ({last.db if last else 'none'}): stale or forked request"
        )
    if last is not None and last.compression != p.compression:
        return (
            f"{p.repo}/{p.arch} is written as {last.compression}, not {p.compression}; "
            "a repository keeps its compression"
        )
    return None
