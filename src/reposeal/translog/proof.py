"""Offline proofs that an entry is in a witnessed checkpoint: C2SP tlog-proof. Pure.

    c2sp.org/tlog-proof@v1
    extra <base64 of the log entry>
    index <n>
    <base64 hash>...            (the RFC 6962 inclusion proof, leaf's sibling first)

    <the checkpoint, with its cosignatures>

The repo machine writes one beside each published database (``NAME.db.tar.gz.tlog-proof``),
with the database's log entry as the extra data, so a client checks that the database was
logged and witnessed without fetching the log's tiles.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass

from reposeal.alpm.limits import MAX_PROOF_BYTES
from reposeal.errors import InputError
from reposeal.translog.checkpoint import Checkpoint, split_note
from reposeal.translog.merkle import leaf_hash, root_from_inclusion_proof

HEADER = "c2sp.org/tlog-proof@v1"


class ProofFileError(InputError):
    """A tlog-proof that is malformed, or whose inclusion proof does not hold."""


@dataclass(frozen=True)
class TlogProof:
    extra: bytes
    index: int
    hashes: tuple[bytes, ...]
    note: bytes

    def render(self) -> bytes:
        lines = [HEADER]
        if self.extra:
            lines.append(f"extra {base64.b64encode(self.extra).decode()}")
        lines.append(f"index {self.index}")
        lines += [base64.b64encode(h).decode() for h in self.hashes]
        return ("\n".join(lines) + "\n\n").encode() + self.note

    def checkpoint(self) -> Checkpoint:
        """The checkpoint, once the inclusion proof binds ``extra`` (as the leaf) to it."""
        cp = Checkpoint.parse(split_note(self.note)[0])
        try:
            root = root_from_inclusion_proof(
                self.index, cp.size, leaf_hash(self.extra), self.hashes
            )
        except InputError as exc:
            raise ProofFileError(f"the inclusion proof: {exc.message}") from None
        if root != cp.root:
            raise ProofFileError("the inclusion proof does not lead to the checkpoint's root")
        return cp


def parse_proof(data: bytes) -> TlogProof:
    if len(data) > MAX_PROOF_BYTES:
        raise ProofFileError("the proof is too large")
    head, sep, note = data.partition(b"\n\n")
    if not sep:
        raise ProofFileError("a tlog-proof has its lines, an empty line, then the checkpoint")
    try:
        lines = head.decode("ascii").split("\n")
    except UnicodeDecodeError:
        raise ProofFileError("the proof's lines are not ASCII") from None
    if lines[0] != HEADER:
        raise ProofFileError(f"the first line must be {HEADER}")
    rest = lines[1:]
    extra = b""
    try:
        if rest and rest[0].startswith("extra "):
            extra = base64.b64decode(rest.pop(0)[6:], validate=True)
        if not rest or not rest[0].startswith("index "):
            raise ProofFileError("the proof has no index line")
        digits = rest.pop(0)[6:]
        if not digits.isdigit() or (digits != "0" and digits.startswith("0")):
            raise ProofFileError("the index is a decimal without leading zeroes")
        hashes = tuple(base64.b64decode(h, validate=True) for h in rest)
    except (binascii.Error, ValueError):
        raise ProofFileError("a proof line is not base64") from None
    if any(len(h) != 32 for h in hashes) or len(hashes) > 63:
        raise ProofFileError("the inclusion proof is not a list of SHA-256 hashes")
    return TlogProof(extra, int(digits), hashes, note)


def make_proof(entry: bytes, index: int, hashes: Sequence[bytes], note: bytes) -> bytes:
    return TlogProof(entry, index, tuple(hashes), note).render()
