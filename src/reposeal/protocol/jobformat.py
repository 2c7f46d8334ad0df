"""The bridge's job format, shared by the repo machine and the enclave (no server code).

The enclave re-checks every field with these: the bridge belongs to the repo machine, which
it does not trust.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from reposeal.alpm.names import arch_field, name_field
from reposeal.errors import InputError

SHA256 = re.compile(r"[0-9a-f]{64}")
JOB_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# where a job's file goes in the job folder; no traversal, no hidden names
JOB_PATH = re.compile(
    r"(policy\.json(\.sig)?|keyring\.pgp|packages/[A-Za-z0-9@_+-][A-Za-z0-9@._+-]*"
    r"|evidence/[A-Za-z0-9_-][A-Za-z0-9._-]*\.json(\.sig)?|evidence/[0-9a-f]{64}\.PKGBUILD)"
)
# a git commit id (SHA-1), as source jobs and statements name it
COMMIT = re.compile(r"[0-9a-f]{40}")
KINDS = ("transition", "refresh", "packages", "policy", "adopt")
# the fields a job may carry besides its files (the enclave checks each again)
FIELDS = ("id", "kind", "repo", "arch", "files", "parent", "add", "moves", "remove",
          "compression", "expect")  # fmt: skip


class JobFormatError(InputError):
    """A bridge job whose fields do not hold up; the message says which."""


@dataclass(frozen=True)
class BridgeJob:
    """A job as the enclave takes it from the bridge, each field checked before any file is
    fetched (the bridge is the repo machine's, which it does not trust). ``request`` is the
    job as sent: what the enclave's answer is bound to (its digest)."""

    id: str
    kind: str
    repo: str | None  # None: a policy rotation
    arch: str | None
    files: Mapping[str, str]  # where in the job folder -> sha256
    request: Mapping[str, object]
    add: tuple[str, ...] = ()
    moves: tuple[tuple[str, str], ...] = ()  # (file, the layer it moves up from)
    remove: tuple[str, ...] = ()
    claims_parent: bool = False  # whether the job names the database it starts from
    parent: str | None = None  # ... and which (None: the first)
    compression: str = ".gz"
    expect: str | None = None  # a refresh: the sync database the requester holds

    @classmethod
    def from_json(cls, doc: Mapping[str, object]) -> BridgeJob:
        """The job in ``doc``; JobFormatError (saying which field) if it is not one."""
        job_id = doc.get("id")
        if not isinstance(job_id, str) or not JOB_ID.fullmatch(job_id):
            raise JobFormatError("a job id is 1-128 letters, digits and ._:-")
        kind = doc.get("kind")
        if not isinstance(kind, str) or kind not in KINDS:
            raise JobFormatError(
                f"unknown job kind {str(kind)[:40]!r} (the enclave takes "
                f"{', '.join(KINDS)}; it never takes a database to sign)"
            )
        repo = arch = None
        if kind != "policy":
            repo, arch = name_field(doc.get("repo")), arch_field(doc.get("arch"))
        files = doc.get("files")
        if not isinstance(files, dict):
            raise JobFormatError("a job must list its files")
        for rel, digest in files.items():
            if not JOB_PATH.fullmatch(str(rel)) or not SHA256.fullmatch(str(digest)):
                raise JobFormatError(f"a job file is malformed: {str(rel)[:80]!r}")
        moves = doc.get("moves", [])
        if not isinstance(moves, list) or not all(
            isinstance(m, dict)
            and isinstance(m.get("file"), str)
            and isinstance(m.get("from"), str)
            for m in moves
        ):
            raise JobFormatError("a transition job's moves are {file, from} pairs")
        parent, expect = doc.get("parent"), doc.get("expect")
        if parent is not None and not (isinstance(parent, str) and SHA256.fullmatch(parent)):
            raise JobFormatError("a transition job's parent is a sha256 or null")
        if expect is not None and not (isinstance(expect, str) and SHA256.fullmatch(expect)):
            raise JobFormatError("a refresh job's expected database is a sha256 or null")
        compression = doc.get("compression", ".gz")
        if not isinstance(compression, str):
            raise JobFormatError("a job's compression is a suffix like .gz")
        return cls(
            job_id,
            kind,
            repo,
            arch,
            {str(k): str(v) for k, v in files.items()},
            dict(doc),
            add=_names(doc, "add"),
            moves=tuple((str(m["file"]), str(m["from"])) for m in moves),
            remove=_names(doc, "remove"),
            claims_parent="parent" in doc,
            parent=parent,
            compression=compression,
            expect=expect,
        )


def _names(doc: Mapping[str, object], key: str) -> tuple[str, ...]:
    value = doc.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise JobFormatError(f"a transition job's {key} is a list of names")
    return tuple(value)
