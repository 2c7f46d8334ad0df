"""What a sandboxed worker decided, as a typed record: the one form its answer takes from
the sandbox to the code that signs and logs.

The worker is ours, but it has just read hostile bytes; its answer is checked field by field
on the way out of the sandbox (``from_json``), and a malformed one signs nothing. Pure: no
I/O, importable inside the sandbox.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from reposeal.canonical import plain
from reposeal.errors import SigningError

# the hashes of what an accepted transition wrote, by the name of its blob
DIGESTS = ("records", "db", "files", "index")


class MalformedDecisionError(SigningError):
    """The worker's answer is not a decision; nothing was signed."""


@dataclass(frozen=True)
class Decision:
    """A worker's decision on one job, and what the log entry says of it."""

    decision: str  # "accept" or "refuse"
    reasons: tuple[str, ...] = ()
    repo: str = ""
    arch: str = ""
    parent: str | None = None  # the database the transition starts from
    policy_version: int | None = None
    ignored_evidence: tuple[str, ...] = ()  # statements it could not use, and why
    evidence: tuple[str, ...] = ()  # the statements it used, by sha256
    # for each statement used, the sha256 of each signature file it came with
    evidence_signatures: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    used_overrides: tuple[str, ...] = ()
    used_removals: tuple[str, ...] = ()
    admitted: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # name -> approvals
    moved_from: Mapping[str, str] = field(default_factory=dict)  # name -> lower layer
    removes: tuple[str, ...] = ()
    replaced: tuple[str, ...] = ()  # package files no entry names any more
    adoption: bool = False
    package_signatures: Mapping[str, str] = field(default_factory=dict)  # sha256 -> base64
    records_sha256: str | None = None
    db_sha256: str | None = None
    files_sha256: str | None = None
    index_sha256: str | None = None

    @property
    def accepted(self) -> bool:
        return self.decision == "accept"

    def digest(self, blob: str) -> str | None:
        """The sha256 the worker gives for one of ``DIGESTS``."""
        value = getattr(self, f"{blob}_sha256")
        return value if isinstance(value, str) else None

    @classmethod
    def refusal(cls, *reasons: str) -> Decision:
        return cls("refuse", tuple(reasons))

    @classmethod
    def from_json(cls, doc: object) -> Decision:
        """The decision in ``doc``, every field of the type it must have; anything else
        (a missing or unknown field, a wrong type) raises ``MalformedDecisionError``."""
        if not isinstance(doc, Mapping):
            raise MalformedDecisionError("the worker's decision is not an object")
        known = {f.name: f for f in fields(cls)}
        unknown = set(doc) - set(known)
        if unknown:
            raise MalformedDecisionError(
                f"the worker's decision has unknown fields {sorted(unknown)}"
            )
        if doc.get("decision") not in ("accept", "refuse"):
            raise MalformedDecisionError("the worker's decision is neither accept nor refuse")
        values: dict[str, Any] = {}
        for name, value in doc.items():
            values[name] = _checked(name, value)
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        """The decision as JSON (lists and objects), as ``from_json`` reads it."""
        return {f.name: plain(getattr(self, f.name)) for f in fields(self)}


_STRINGS = ("reasons", "ignored_evidence", "evidence", "used_overrides", "used_removals",
            "removes", "replaced")  # fmt: skip
_LISTS_BY_NAME = ("evidence_signatures", "admitted")
_STRING_MAPS = ("moved_from", "package_signatures")
_OPTIONAL_STRINGS = ("parent", "records_sha256", "db_sha256", "files_sha256", "index_sha256")


def _strings(name: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise MalformedDecisionError(f"the worker's {name} is not a list of strings")
    return tuple(value)


def _checked(name: str, value: object) -> object:
    """One field of a decision, of its type (lists become tuples)."""
    if name in _STRINGS:
        return _strings(name, value)
    if name in _LISTS_BY_NAME:
        if not isinstance(value, dict):
            raise MalformedDecisionError(f"the worker's {name} is not an object")
        return {str(k): _strings(name, v) for k, v in value.items()}
    if name in _STRING_MAPS:
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise MalformedDecisionError(f"the worker's {name} is not an object of strings")
        return {str(k): v for k, v in value.items()}
    if name in _OPTIONAL_STRINGS:
        if value is not None and not isinstance(value, str):
            raise MalformedDecisionError(f"the worker's {name} is not a string")
        return value
    if name == "policy_version":
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise MalformedDecisionError("the worker's policy_version is not a number")
        return value
    if name == "adoption":
        if not isinstance(value, bool):
            raise MalformedDecisionError("the worker's adoption is not true or false")
        return value
    if not isinstance(value, str):  # decision, repo, arch
        raise MalformedDecisionError(f"the worker's {name} is not a string")
    return value
