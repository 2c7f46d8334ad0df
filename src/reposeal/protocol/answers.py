"""The enclave's answers, as the bridge carries them to the repo machine: typed records,
written by the enclave (``to_json``) and read by the repo machine (``from_json``), which
checks every field (the answer passed through the bridge, the repo machine's own server)."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any

from reposeal.errors import InputError

_ANSWER_FIELDS = (
    "job", "decision", "reasons", "log_index", "signature", "checkpoint", "inclusion_proof",
    "package_signatures", "files_signature", "databases",
)  # fmt: skip
_DATABASE_FIELDS = ("db_sha256", "files_sha256", "compression", "index", "chunks", "replaced")


class MalformedAnswerError(InputError):
    """An answer that is not one the enclave writes."""


@dataclass(frozen=True)
class DatabaseAnswer:
    """The databases a transition wrote: their hashes, their chunk index, and the chunks
    that are not the parent's (the repo machine holds those). ``replaced``: package files
    no entry names any more."""

    db_sha256: str
    files_sha256: str
    compression: str
    index: bytes
    chunks: dict[str, bytes]
    replaced: list[str]

    def to_json(self) -> dict[str, Any]:
        return {
            "db_sha256": self.db_sha256,
            "files_sha256": self.files_sha256,
            "compression": self.compression,
            "index": base64.b64encode(self.index).decode(),
            "chunks": {d: base64.b64encode(c).decode() for d, c in sorted(self.chunks.items())},
            "replaced": self.replaced,
        }

    @classmethod
    def from_json(cls, doc: object) -> DatabaseAnswer:
        d = _object(doc, "databases", _DATABASE_FIELDS)
        return cls(
            _text(d.get("db_sha256"), "db_sha256"),
            _text(d.get("files_sha256"), "files_sha256"),
            _text(d.get("compression"), "compression"),
            _b64(d.get("index"), "index"),
            {str(k): _b64(v, "chunk") for k, v in _object(d.get("chunks", {}), "chunks").items()},
            _texts(d.get("replaced", []), "replaced"),
        )


@dataclass
class JobResult:
    """The enclave's answer to one job, as the bridge carries it to the repo machine: the
    decision and its reasons; when the enclave logged it, the entry's index, the signed
    checkpoint and the inclusion proof; what it signed (a database, the files database,
    package files) and the databases it wrote."""

    job_id: str
    decision: str
    reasons: list[str]
    log_index: int | None
    signature: bytes | None
    checkpoint: bytes | None
    inclusion_proof: list[bytes]
    package_signatures: dict[str, bytes] = field(default_factory=dict)  # file name -> sig
    files_signature: bytes | None = None  # of the files database
    databases: DatabaseAnswer | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "job": self.job_id,
            "decision": self.decision,
            "reasons": self.reasons,
            "log_index": self.log_index,
            "signature": base64.b64encode(self.signature).decode() if self.signature else None,
            "checkpoint": self.checkpoint.decode() if self.checkpoint is not None else None,
            "inclusion_proof": [base64.b64encode(h).decode() for h in self.inclusion_proof],
            "package_signatures": {
                name: base64.b64encode(sig).decode()
                for name, sig in sorted(self.package_signatures.items())
            },
            **(
                {"files_signature": base64.b64encode(self.files_signature).decode()}
                if self.files_signature
                else {}
            ),
            **({"databases": self.databases.to_json()} if self.databases else {}),
        }

    @property
    def accepted(self) -> bool:
        return self.decision == "accept"

    @classmethod
    def refused(cls, job_id: str, reason: str) -> JobResult:
        """A refusal the enclave gives before anything is logged (a job it cannot read)."""
        return cls(job_id, "refuse", [reason], None, None, None, [])

    @classmethod
    def from_json(cls, doc: object) -> JobResult:
        """An answer as the bridge carries it, each field of its type; anything else raises
        ``MalformedAnswerError`` (the repo machine then treats the job as refused)."""
        d = _object(doc, "answer", _ANSWER_FIELDS)
        decision = d.get("decision")
        if decision not in ("accept", "refuse"):
            raise MalformedAnswerError("the answer is neither accept nor refuse")
        index = d.get("log_index")
        if index is not None and (not isinstance(index, int) or isinstance(index, bool)):
            raise MalformedAnswerError("the answer's log_index is not a number")
        checkpoint = d.get("checkpoint")
        if checkpoint is not None and not isinstance(checkpoint, str):
            raise MalformedAnswerError("the answer's checkpoint is not text")
        databases = d.get("databases")
        return cls(
            _text(d.get("job"), "job"),
            str(decision),
            _texts(d.get("reasons", []), "reasons"),
            index,
            _optional_b64(d.get("signature"), "signature"),
            checkpoint.encode() if checkpoint is not None else None,
            [_b64(h, "inclusion_proof") for h in _list(d.get("inclusion_proof", []), "proof")],
            {str(k): _b64(v, "package signature")
             for k, v in _object(d.get("package_signatures", {}), "signatures").items()},
            _optional_b64(d.get("files_signature"), "files_signature"),
            DatabaseAnswer.from_json(databases) if databases is not None else None,
        )  # fmt: skip


def _object(value: object, what: str, allowed: tuple[str, ...] | None = None) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MalformedAnswerError(f"the answer's {what} is not an object")
    if allowed is not None and set(value) - set(allowed):
        raise MalformedAnswerError(
            f"the answer has unknown fields {sorted(set(value) - set(allowed))}"
        )
    return value


def _list(value: object, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise MalformedAnswerError(f"the answer's {what} is not a list")
    return value


def _text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise MalformedAnswerError(f"the answer's {what} is not text")
    return value


def _texts(value: object, what: str) -> list[str]:
    return [_text(v, what) for v in _list(value, what)]


def _b64(value: object, what: str) -> bytes:
    try:
        return base64.b64decode(_text(value, what), validate=True)
    except (binascii.Error, ValueError):
        raise MalformedAnswerError(f"the answer's {what} is not base64") from None


def _optional_b64(value: object, what: str) -> bytes | None:
    return None if value is None else _b64(value, what)
