"""The tlog-witness ``add-checkpoint`` rules (C2SP tlog-witness), as a pure decision.

A request body is ``old <size>\\n``, up to 63 base64 consistency-proof lines, an empty
line, then the checkpoint (a signed note). The decision needs only what the witness keeps
per log (the size and root it cosigned last) and the keys it trusts for the origin; it says
either which HTTP status the spec requires, or the new state to store and answer with a
cosignature.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from reposeal.alpm.limits import MAX_PROOF_LINES, MAX_WITNESS_BODY
from reposeal.errors import ReposealError
from reposeal.translog.checkpoint import Checkpoint, NoteVerifier, open_note, split_note
from reposeal.translog.merkle import EMPTY_ROOT, HASH_SIZE, ProofError, verify_consistency


@dataclass(frozen=True)
class Refusal:
    """What to answer instead of a cosignature: an HTTP status, and why."""

    status: int
    message: str
    size: int | None = None  # for 409: the size the witness holds


@dataclass(frozen=True)
class Request:
    old: int
    proof: tuple[bytes, ...]
    note: bytes


@dataclass(frozen=True)
class Accept:
    checkpoint: Checkpoint
    text: str  # the checkpoint's note text, what the cosignature covers


def parse_request(body: bytes) -> Request | Refusal:
    if len(body) > MAX_WITNESS_BODY:
        return Refusal(413, "the request body is too large")
    head, sep, note = body.partition(b"\n\n")
    if not sep:
        return Refusal(400, "the body is old size, proof lines, an empty line, the checkpoint")
    lines = head.split(b"\n")
    first = lines[0]
    if not first.startswith(b"old "):
        return Refusal(400, "the first line must be `old <size>`")
    digits = first[4:]
    if not digits.isdigit() or (digits != b"0" and digits.startswith(b"0")):
        return Refusal(400, "the old size is a decimal without leading zeroes")
    if len(lines) - 1 > MAX_PROOF_LINES:
        return Refusal(400, f"more than {MAX_PROOF_LINES} consistency proof lines")
    proof = []
    for line in lines[1:]:
        try:
            h = base64.b64decode(line, validate=True)
        except (binascii.Error, ValueError):
            return Refusal(400, "a consistency proof line is not base64")
        if len(h) != HASH_SIZE or not line:
            return Refusal(400, "a consistency proof line is not one SHA-256 hash")
        proof.append(h)
    return Request(int(digits), tuple(proof), note)


def decide(
    request: Request,
    logs: dict[str, list[NoteVerifier]],
    held: tuple[int, bytes] | None,
) -> Accept | Refusal:
    """``logs``: origin -> the log keys trusted for it; ``held``: (size, root) of the last
    checkpoint cosigned for that origin (None: never)."""
    try:
        text, _ = split_note(request.note)
        cp = Checkpoint.parse(text)
    except ReposealError as exc:
        return Refusal(400, f"the checkpoint is malformed: {exc.message}")
    keys = logs.get(cp.origin)
    if keys is None:
        return Refusal(404, f"this witness does not witness the log {cp.origin[:100]!r}")
    if not _signed(request.note, keys):
        return Refusal(403, f"the checkpoint is not signed by a key of {cp.origin[:100]!r}")
    if request.old > cp.size:
        return Refusal(400, f"old size {request.old} is larger than the checkpoint's {cp.size}")
    size, root = held if held is not None else (0, EMPTY_ROOT)
    if request.old != size:
        return Refusal(409, f"this witness holds size {size}, not {request.old}", size)
    if cp.size == 0 and cp.root != EMPTY_ROOT:
        return Refusal(422, "a checkpoint of size zero must have the empty tree's root")
    if request.old == 0 and request.proof:
        return Refusal(422, "a consistency proof from size zero must be empty")
    try:
        if request.old:
            verify_consistency(request.old, cp.size, root, cp.root, request.proof)
    except ProofError as exc:
        return Refusal(422, f"the checkpoint is not consistent with size {size}: {exc.message}")
    return Accept(cp, text)


def _signed(note: bytes, keys: list[NoteVerifier]) -> bool:
    """A valid signature by one of ``keys`` (a line that matches a key but does not verify
    makes the note malformed: refused, as the spec says)."""
    for key in keys:
        try:
            open_note(note, key)
            return True
        except ReposealError:
            continue
    return False
