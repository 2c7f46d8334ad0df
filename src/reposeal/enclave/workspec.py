"""What the enclave asks its sandboxed worker, as a typed record: the job's kind and
repository and, for a transition or an adoption, what is proposed and the databases it
starts from (by the hashes the enclave's log names). It crosses the channel as JSON and is
read back strictly inside the sandbox. Pure, importable in the sandbox."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reposeal.errors import ReposealError

WORK_KINDS = ("packages", "transition", "adopt")


class WorkSpecError(ReposealError):
    """A job spec the worker cannot take (a field missing or of the wrong type)."""


@dataclass(frozen=True)
class WorkSpec:
    kind: str
    repo: str
    arch: str = ""
    add: tuple[str, ...] = ()
    moves: tuple[tuple[str, str], ...] = ()  # (file, the layer it moves up from)
    remove: tuple[str, ...] = ()
    compression: str = ".gz"
    parent: str | None = None  # the sync database it starts from (None: the first)
    parent_files: str | None = None
    parent_index: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "repo": self.repo,
            "arch": self.arch,
            "add": list(self.add),
            "moves": [{"file": f, "from": layer} for f, layer in self.moves],
            "remove": list(self.remove),
            "compression": self.compression,
            "parent": self.parent,
            "parent_files": self.parent_files,
            "parent_index": self.parent_index,
        }

    @classmethod
    def from_json(cls, doc: object) -> WorkSpec:
        """The spec in ``doc``; WorkSpecError (saying which field) otherwise."""
        if not isinstance(doc, dict):
            raise WorkSpecError("the job's spec is not an object")
        unknown = sorted(set(doc) - set(cls.__dataclass_fields__))[:3]
        if unknown:
            raise WorkSpecError(f"the job's spec has unknown fields {unknown}")
        kind = doc.get("kind")
        if kind not in WORK_KINDS:
            raise WorkSpecError(f"a worker runs {', '.join(WORK_KINDS)} jobs, not {kind!r}")
        repo, arch, compression = (_text(doc, k, d) for k, d in TEXTS)
        parent, parent_files, parent_index = (_digest(doc, k) for k in DIGESTS)
        moves = doc.get("moves", [])
        if not isinstance(moves, list) or not all(
            isinstance(m, dict) and all(isinstance(m.get(k), str) for k in ("file", "from"))
            for m in moves
        ):
            raise WorkSpecError("a move names its file and the layer it comes from")
        return cls(
            str(kind),
            repo,
            arch,
            add=_names(doc, "add"),
            moves=tuple((m["file"], m["from"]) for m in moves),
            remove=_names(doc, "remove"),
            compression=compression,
            parent=parent,
            parent_files=parent_files,
            parent_index=parent_index,
        )


TEXTS = (("repo", ""), ("arch", ""), ("compression", ".gz"))
DIGESTS = ("parent", "parent_files", "parent_index")


def _text(doc: dict[str, Any], key: str, default: str) -> str:
    value = doc.get(key, default)
    if not isinstance(value, str):
        raise WorkSpecError(f"the job's {key} is not text")
    return value


def _digest(doc: dict[str, Any], key: str) -> str | None:
    value = doc.get(key)
    if value is not None and not isinstance(value, str):
        raise WorkSpecError(f"the job's {key} is not a sha256")
    return value


def _names(doc: dict[str, Any], key: str) -> tuple[str, ...]:
    value = doc.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise WorkSpecError(f"the job's {key} is not a list of names")
    return tuple(value)
