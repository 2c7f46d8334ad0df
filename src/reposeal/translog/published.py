"""A transparency log as its mirrors publish it (C2SP tiles, the checkpoint with its
cosignatures, the repository key's signature), fetched and checked: what clients verify
against and what `enclave restore` rebuilds from. Fetching is at the edge; checks are pure.
"""

from __future__ import annotations

import json
import struct
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from reposeal.alpm.limits import MAX_SKEW, MAX_SMALL, MAX_TILE
from reposeal.errors import InputError, ReposealError, VerificationError
from reposeal.openpgp.verify import Keyring, verify_detached
from reposeal.translog.checkpoint import Checkpoint, NoteVerifier, open_note, signed_by_only
from reposeal.translog.cosignature import cosignatures
from reposeal.translog.merkle import leaf_hashes, root_of_leaves
from reposeal.translog.tiles import TILE_WIDTH, sig_path, tile_path

if TYPE_CHECKING:
    from reposeal.translog.witnesspolicy import WitnessPolicy


Fetch = Callable[[str, int], bytes]


class VerifyError(VerificationError):
    """The database, its signature or the log does not hold; the message says which."""


def fetch_url(url: str, limit: int) -> bytes:
    """GET ``url`` (https, http or file), at most ``limit`` bytes."""
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in ("https", "http", "file"):
        raise InputError(f"unsupported URL scheme in {url!r}")
    try:
        with urllib.request.urlopen(url, timeout=60) as resp:  # noqa: S310  (scheme checked)
            data: bytes = resp.read(limit + 1)
    except OSError as exc:
        raise VerifyError(f"cannot fetch {url}: {exc}") from None
    if len(data) > limit:
        raise VerifyError(f"{url} is larger than {limit} bytes")
    return data


@dataclass(frozen=True)
class Log:
    """A log as published, checked: its entries (parsed), its checkpoint."""

    checkpoint: Checkpoint
    note: bytes
    entries: list[bytes]
    docs: list[dict[str, Any]]
    verifier: NoteVerifier


def _bundle(data: bytes) -> list[bytes]:
    out = []
    at = 0
    while at < len(data):
        if len(data) < at + 2:
            raise VerifyError("an entries tile is truncated")
        (n,) = struct.unpack_from(">H", data, at)
        if len(data) < at + 2 + n:
            raise VerifyError("an entries tile is truncated")
        out.append(data[at + 2 : at + 2 + n])
        at += 2 + n
    return out


def load_log(base: str, keyring: Keyring, fetch: Fetch = fetch_url) -> Log:
    """The log at ``base`` (its C2SP tiles), checked against the trusted keys."""
    note = fetch(f"{base}/checkpoint", MAX_SMALL)
    try:  # the signature of this very checkpoint (checkpoint.sig may be newer or older)
        signature = fetch(f"{base}/{sig_path(note)}", MAX_SMALL)
    except VerifyError:  # a mirror written before these were kept
        signature = fetch(f"{base}/checkpoint.sig", MAX_SMALL)
    text = note.decode(errors="replace").split("\n\n", 1)[0] + "\n"
    cp = Checkpoint.parse(text)
    entries: list[bytes] = []
    for n in range((cp.size + TILE_WIDTH - 1) // TILE_WIDTH):
        width = min(TILE_WIDTH, cp.size - n * TILE_WIDTH)
        tile = _bundle(fetch(f"{base}/{tile_path('entries', n, width)}", MAX_TILE))
        if len(tile) != width:
            raise VerifyError(f"entries tile {n} holds {len(tile)} entries, not {width}")
        entries += tile
    log = check_log(cp, note, entries)
    try:  # over the note as the log signed it (witnesses add their lines after)
        verify_detached(signed_by_only(note, log.verifier), signature, keyring)
    except ReposealError as exc:
        raise VerifyError(f"the log's checkpoint is not signed by a trusted key: {exc}") from None
    return log


def check_log(cp: Checkpoint, note: bytes, entries: Sequence[bytes]) -> Log:
    """The entries make the checkpoint's tree, and the note is signed by the note key the
    log's genesis entry names. Pure."""
    if not entries or root_of_leaves(leaf_hashes(entries)) != cp.root:
        raise VerifyError("the published log entries do not make the checkpoint's tree")
    decode = json.JSONDecoder().decode  # entries are UTF-8 JSON; str input skips detection
    try:
        docs = [decode(e.decode("utf-8")) for e in entries]
    except ValueError:  # UnicodeDecodeError included
        raise VerifyError("a log entry is not UTF-8 JSON") from None
    try:
        verifier = NoteVerifier.decode(str(docs[0]["note_verifier"]))
        open_note(note, verifier)
    except (KeyError, ReposealError) as exc:
        raise VerifyError(f"the checkpoint is not signed by the log's own key: {exc}") from None
    return Log(cp, note, list(entries), docs, verifier)


def check_witnessed(
    note: bytes, policy: WitnessPolicy, now: float, max_age: float
) -> dict[str, int]:
    """The checkpoint carries the policy's quorum of valid cosignatures, counting only those
    made within ``max_age`` seconds of ``now``; the cosignatures counted. Pure."""
    try:
        found = cosignatures(note, policy.keys)
    except ReposealError as exc:
        raise VerifyError(f"the log's checkpoint carries a bad cosignature: {exc}") from None
    # a cosignature counts if made within max_age, and not from the future (beyond clock
    # skew): a witness with a clock set ahead must not make a checkpoint fresh for ever
    fresh = {name: t for name, t in found.items() if now - max_age <= t <= now + MAX_SKEW}
    if policy.satisfied(fresh):
        return fresh
    if policy.satisfied(found):
        newest = time.strftime("%Y-%m-%d %H:%M", time.gmtime(max(found.values())))
        raise VerifyError(
            f"the log's checkpoint was last witnessed by the quorum at {newest} UTC, longer "
            f"ago than {max_age / 3600:.0f} h: the mirror is frozen or replays an old log"
        )
    have = ", ".join(sorted(found)) or "none"
    raise VerifyError(
        f"the log's checkpoint lacks the witnesses' quorum (valid cosignatures: {have}): an "
        "unwitnessed log, a fork shown to this machine only (split view), or an old one"
    )
