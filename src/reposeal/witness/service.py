"""`reposeal witness serve`: a C2SP tlog-witness over HTTP(S).

    POST /add-checkpoint           old size, consistency proof, checkpoint -> cosignature
    GET  /<sha256(origin)>/checkpoint   the last checkpoint cosigned, with the cosignature

Status codes as the spec gives them: 400 malformed, 403 not signed by a key of the origin,
404 an origin it does not witness, 409 (with ``text/x.tlog.size``) when the client's old
size is not the one held, 422 inconsistent, 413 too large. Nothing is stored unless the
checkpoint is cosigned.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from reposeal import logs
from reposeal.alpm.limits import MAX_WITNESS_BODY
from reposeal.errors import ReposealError
from reposeal.translog.checkpoint import Checkpoint, NoteVerifier, split_note
from reposeal.translog.cosignature import Cosigner, add_cosignatures
from reposeal.witness.protocol import Accept, Refusal, decide, parse_request
from reposeal.witness.store import WitnessStore


class Witness:
    """The decision, the key and the store, behind the HTTP handlers."""

    def __init__(
        self,
        store: WitnessStore,
        cosigner: Cosigner,
        logs: dict[str, list[NoteVerifier]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store, self.cosigner, self.logs, self.clock = store, cosigner, logs, clock

    def add_checkpoint(self, body: bytes) -> Refusal | bytes:
        """The cosignature line for an accepted checkpoint, or the refusal."""
        request = parse_request(body)
        if isinstance(request, Refusal):
            return request
        try:
            origin = Checkpoint.parse(split_note(request.note)[0]).origin
        except ReposealError:  # malformed: decide() says how
            origin = ""
        line = ""

        def cosign(accepted: Accept) -> tuple[bytes, float]:
            nonlocal line
            now = self.clock()
            line = self.cosigner.cosign(accepted.text, int(now))
            return add_cosignatures(request.note, [line]), now

        verdict = self.store.update(origin, lambda held: decide(request, self.logs, held), cosign)
        if isinstance(verdict, Refusal):
            return verdict
        return line.encode()


def make_app(witness: Witness) -> web.Application:
    from reposeal.metrics import Metrics, add_route

    app = web.Application(client_max_size=MAX_WITNESS_BODY)
    metrics = Metrics("witness")

    async def add_checkpoint(request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > MAX_WITNESS_BODY:
            return web.Response(status=413, text="the request body is too large\n")
        body = await request.read()
        # on the loop, not a thread: under a millisecond, and one at a time is what the
        # store's check-and-update needs anyway
        answer = witness.add_checkpoint(body)
        outcome = str(answer.status) if isinstance(answer, Refusal) else "cosigned"
        metrics.job("add-checkpoint", outcome)
        if isinstance(answer, Refusal):
            if answer.status == 409:
                return web.Response(status=409, body=f"{answer.size}\n".encode(),
                                    content_type="text/x.tlog.size")  # fmt: skip
            return web.Response(status=answer.status, text=answer.message + "\n")
        return web.Response(body=answer, content_type="text/plain")

    async def checkpoint(request: web.Request) -> web.Response:
        wanted = request.match_info["origin_hash"]
        for origin in witness.store.origins():
            if hashlib.sha256(origin.encode()).hexdigest() == wanted:
                note = witness.store.latest(origin)
                if note is not None:
                    return web.Response(body=note, content_type="text/plain")
        return web.Response(status=404, text="this witness has cosigned no checkpoint of it\n")

    app.router.add_post("/add-checkpoint", add_checkpoint)
    app.router.add_get("/{origin_hash:[0-9a-f]{64}}/checkpoint", checkpoint)
    add_route(app, metrics)
    return app


def load_logs(specs: list[str]) -> dict[str, list[NoteVerifier]]:
    """``ORIGIN=VKEY`` or a bare VKEY (whose key name is the origin) -> keys by origin."""
    logs: dict[str, list[NoteVerifier]] = {}
    for spec in specs:
        origin, sep, vkey = spec.partition("=")
        try:
            key = NoteVerifier.decode(vkey) if sep else None
        except ReposealError:
            key = None  # the "=" was base64 padding of a bare key
        if key is None:
            key = NoteVerifier.decode(spec)
            origin = key.name
        logs.setdefault(origin, []).append(key)
    return logs


def say(message: str) -> None:
    logs.info("witness", message)


def load_cosigner(path: Path) -> Cosigner:
    return Cosigner.decode(path.read_text())
