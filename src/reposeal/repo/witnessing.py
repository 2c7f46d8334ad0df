"""The repo machine collects witness cosignatures on the log's checkpoints (C2SP
tlog-witness), before anything that checkpoint covers is published.

The enclave dials nobody; the repo machine sends each new checkpoint to the policy's
witnesses with a consistency proof from the size each witness holds (learnt from a 409
when it does not know it), checks every cosignature it gets back, and keeps them beside
the checkpoint. A checkpoint with fewer than the quorum is not published; witnesses that
are down are tried again with backoff, and the cycle says which are missing. Cosignatures
are renewed when the newest is older than ``rewitness`` seconds, so clients can demand
fresh ones and a frozen mirror shows its age.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from reposeal.alpm.limits import MAX_ANSWER
from reposeal.errors import ReposealError
from reposeal.fsio import atomic_write
from reposeal.translog.checkpoint import Checkpoint, split_note
from reposeal.translog.cosignature import CosignerKey, add_cosignatures, cosignatures
from reposeal.translog.witnesspolicy import WitnessPolicy

TIMEOUT = 5.0
BACKOFF = (1.0, 2.0, 5.0, 15.0, 60.0, 300.0)

# url, body -> (HTTP status, body); raises OSError when the witness cannot be reached
Post = Callable[[str, bytes], tuple[int, bytes]]
Proof = Callable[[int, int], list[bytes]]


def post_http(url: str, body: bytes) -> tuple[int, bytes]:
    url = f"{url.rstrip('/')}/add-checkpoint"
    request = urllib.request.Request(url, data=body, method="POST")  # noqa: S310  (policy URL)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as resp:  # noqa: S310  (policy URL)
            return int(resp.status), resp.read(MAX_ANSWER)
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read(MAX_ANSWER)


@dataclass
class WitnessState:
    """``FOLDER/witnesses.json``: per witness, the size it holds (so the next request
    carries the right old size and proof), and when it last failed (for the backoff)."""

    path: Path
    sizes: dict[str, int] = field(default_factory=dict)
    failures: dict[str, tuple[int, float]] = field(default_factory=dict)  # name -> (n, when)

    @classmethod
    def load(cls, path: Path) -> WitnessState:
        if not path.exists():
            return cls(path)
        try:  # only an optimisation: a damaged file is relearnt (a 409 says each size)
            doc = json.loads(path.read_bytes())
            fails = {k: (int(v[0]), float(v[1])) for k, v in doc.get("failures", {}).items()}
            return cls(path, {k: int(v) for k, v in doc.get("sizes", {}).items()}, fails)
        except (OSError, ValueError, TypeError, AttributeError, IndexError):
            return cls(path)

    def save(self) -> None:
        doc = {"sizes": self.sizes, "failures": {k: list(v) for k, v in self.failures.items()}}
        atomic_write(self.path, json.dumps(doc, sort_keys=True).encode(), durable=False)

    def due(self, name: str, now: float) -> bool:
        n, when = self.failures.get(name, (0, 0.0))
        return n == 0 or now >= when + BACKOFF[min(n, len(BACKOFF)) - 1]


@dataclass(frozen=True)
class Witnessed:
    note: bytes  # the checkpoint with every valid cosignature held
    cosigned: dict[str, int]  # witness key name -> newest cosignature timestamp
    missing: dict[str, str]  # policy witness name -> why it has not cosigned

    def meets(self, policy: WitnessPolicy) -> bool:
        return policy.satisfied(self.cosigned)


def request_body(old: int, proof: list[bytes], note: bytes) -> bytes:
    lines = [f"old {old}".encode(), *(base64.b64encode(h) for h in proof)]
    return b"\n".join(lines) + b"\n\n" + note


def ask(
    url: str, key: CosignerKey, note: bytes, held: int, proof: Proof, post: Post
) -> tuple[str | None, int | None, str]:
    """One witness's cosignature line on ``note`` (checked), the size it now holds, and
    what went wrong if it did not cosign."""
    text, _ = split_note(note)
    size = Checkpoint.parse(text).size
    for _ in range(2):  # a 409 tells the size it holds: once more with the right proof
        if held > size:
            return None, held, f"holds {held} entries, more than this log's {size}: a fork?"
        body = request_body(held, proof(held, size) if held else [], note)
        try:
            status, answer = post(url, body)
        except OSError as exc:
            return None, None, f"unreachable ({exc})"
        if status == 409:
            try:
                held = int(answer.decode().strip())
            except ValueError:
                return None, None, "a 409 without a size"
            continue
        if status != 200:
            return None, None, f"HTTP {status}: {answer.decode(errors='replace').strip()[:200]}"
        line = answer.decode(errors="replace")
        mine = [x + "\n" for x in line.split("\n") if x.startswith(f"\u2014 {key.name} ")]
        try:
            if mine and key.name in cosignatures(add_cosignatures(note, mine), [key]):
                return mine[0], size, ""
        except ReposealError as exc:
            return None, size, f"an invalid cosignature: {exc.message}"
        return None, size, "no cosignature by its key in the answer"
    return None, held, "the size it holds keeps changing"


def witness(
    note: bytes,
    policy: WitnessPolicy,
    state: WitnessState,
    proof: Proof,
    *,
    post: Post = post_http,
    now: float | None = None,
    rewitness: float = 3600.0,
) -> Witnessed:
    """Gather cosignatures on ``note`` from the witnesses that have none fresh on it (in
    parallel); return the note with all valid ones."""
    now = time.time() if now is None else now
    have = cosignatures(note, policy.keys)
    todo = [  # no fresh cosignature on this note yet, and not backing off
        w
        for w in policy.witnesses
        if w.url and now - have.get(w.key.name, 0) >= rewitness and state.due(w.name, now)
    ]
    missing: dict[str, str] = {}
    lines: list[str] = []
    with ThreadPoolExecutor(max_workers=max(1, len(todo))) as pool:
        futures = {
            w.name: pool.submit(
                ask, w.url or "", w.key, note, state.sizes.get(w.name, 0), proof, post
            )
            for w in todo
        }
        for name, future in futures.items():
            line, size, why = future.result()
            if size is not None:
                state.sizes[name] = size
            if line is not None:
                lines.append(line)
                state.failures.pop(name, None)
            else:
                n, _ = state.failures.get(name, (0, 0.0))
                state.failures[name] = (n + 1, now)
                missing[name] = why
    note = add_cosignatures(note, lines)
    cosigned = cosignatures(note, policy.keys)
    for w in policy.witnesses:
        if w.key.name not in cosigned and w.name not in missing:
            missing[w.name] = "waiting to be tried again (backoff)" if w.url else "no URL"
    if todo:  # nothing asked, nothing learnt: the cycle calls this every round
        state.save()
    return Witnessed(note, cosigned, missing)
