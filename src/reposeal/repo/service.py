"""`reposeal repo serve`: the repo machine's one HTTPS service (mutual TLS, every endpoint
checks the role in the caller's verified certificate). It is the bridge the enclave polls,
plus the intake:

    POST /builds       builder  a built package with its signed build statement; the body
                                is a 4-byte big-endian header length, a JSON header
                                {"statement": base64, "signatures": base64}, then the package
    POST /statements   source   {"statement": base64, "signatures": base64}: an approval,
                                a removal request or a withdrawal signed by maintainers;
                                an approval may bring "pkgbuild": base64, the text it approves
    GET  /status       repo, source, builder
                                what is ready, and what waits for which evidence
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from reposeal import logs
from reposeal.alpm.limits import DEFAULT_LIMITS
from reposeal.errors import ReposealError
from reposeal.evidence.files import read_document
from reposeal.metrics import Metrics, add_route
from reposeal.policy.document import Policy, verify_policy
from reposeal.protocol.roles import require_role
from reposeal.protocol.uploads import LENGTH_BYTES, UploadFormatError, UploadHeader, base64_field
from reposeal.protocol.wire import json_body
from reposeal.repo.bridge import JobQueue, Signals, make_app
from reposeal.repo.cycles import REMOVAL, Cycles
from reposeal.repo.expiry import DAY, expiries
from reposeal.repo.intake import Intake, UploadRefusedError

# what the service keeps on its application: the intake, its metrics, the public site
INTAKE = web.AppKey("intake", Intake)
METRICS = web.AppKey("metrics", Metrics)
PUBLIC = web.AppKey("public", web.Application)


class PolicyFile:
    """The policy the intake checks signatures against, read again when the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[float, Policy] | None = None
        self.get()  # refuse to start without a valid one

    def get(self) -> Policy:
        mtime = self.path.stat().st_mtime
        if self._seen is None or self._seen[0] != mtime:
            self._seen = (mtime, verify_policy(*read_document(self.path)))
        return self._seen[1]


CYCLE_EVERY = 5.0  # seconds between update cycles when nothing wakes them earlier


def _source(w: dict[str, Any]) -> tuple[str, str, str]:
    """How the cycles name what a status line is about (a build's source or a removal)."""
    if "remove" in w:
        return (w["repo"], REMOVAL, w["statement"])
    return (w["repo"], w["pkgbase"], w["commit"])


def make_service(
    folder: Path,
    policy: PolicyFile,
    mirror: Path | None = None,
    refresh_before: float = 3 * 86400,
    rewitness: float = 3600.0,
    hostcheck_dir: Path | None = None,
) -> web.Application:
    """The service; with ``mirror``, it also runs the update cycle (after every upload and
    enclave answer, and every few seconds) and publishes there."""
    queue = JobQueue(folder / "queue")
    intake = Intake(folder / "intake", queue.blobs)
    signals = Signals()
    app = make_app(queue, signals)
    app[INTAKE] = intake
    lock = asyncio.Lock()  # one intake writer at a time; readers are not blocked
    kick = signals.results  # uploads wake the cycle as enclave answers do

    metrics = Metrics("repo")
    if mirror is not None:
        from reposeal.repo.cycle import advance, machine

        async def cycler(app: web.Application) -> Any:
            m = machine(folder, mirror, policy.get())  # its own connections (a thread)
            counted: set[str] = set()  # cycles whose outcome was counted
            m.rewitness = rewitness
            logs.info("repo", "start", dir=str(folder), mirror=str(mirror))

            async def loop() -> None:
                while True:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(kick.wait(), CYCLE_EVERY)
                    kick.clear()
                    m.policy = policy.get()
                    started = time.monotonic()
                    try:
                        moved = await asyncio.to_thread(advance, m, refresh_before)
                        metrics.cycle_seconds.labels("repo").observe(time.monotonic() - started)
                        for c in moved:
                            if c.step in ("done", "failed") and c.id not in counted:
                                counted.add(c.id)
                                metrics.decision(
                                    "transition",
                                    "accept" if c.step == "done" else "refuse",
                                    c.detail.get("reasons", []),
                                )
                    except ReposealError as exc:
                        logs.error("repo", "error", during="cycle", message=exc.message)
                    signals.jobs.set()  # the cycle may have queued jobs

            task = asyncio.create_task(loop())
            yield
            task.cancel()

        app.cleanup_ctx.append(cycler)
    cycles = Cycles(folder / "cycles")  # for status: what the cycles did (any runner)

    def refused(exc: ReposealError) -> web.HTTPException:
        return web.HTTPUnprocessableEntity(text=exc.message)

    async def post_build(request: web.Request) -> web.Response:
        require_role(request, "builder")
        try:
            length = UploadHeader.length(await request.content.readexactly(LENGTH_BYTES))
            header = UploadHeader.from_bytes(await request.content.readexactly(length))
            statement, signatures = header.statement, header.signatures
            # who attests what is checked before the package is received
            await asyncio.to_thread(intake.check_build, policy.get(), statement, signatures)
        except asyncio.IncompleteReadError:
            raise web.HTTPBadRequest(text="malformed upload: it ends early") from None
        except UploadFormatError as exc:
            raise web.HTTPBadRequest(text=f"malformed upload: {exc.message}") from None
        except UploadRefusedError as exc:
            raise refused(exc) from None
        # the package goes to a private temporary file (size-limited), which the intake
        # checks and, if it holds up, moves into place
        tmp = queue.blobs / f".incoming-{os.getpid()}-{id(request)}"
        try:
            size = 0
            with open(tmp, "wb") as f:
                async for chunk in request.content.iter_chunked(1 << 20):
                    size += len(chunk)
                    if size > DEFAULT_LIMITS.max_package_bytes:
                        raise web.HTTPRequestEntityTooLarge(
                            max_size=DEFAULT_LIMITS.max_package_bytes, actual_size=size
                        )
                    f.write(chunk)
            async with lock:
                done = await asyncio.to_thread(
                    intake.add_build, policy.get(), statement, signatures, tmp
                )
        except UploadRefusedError as exc:
            raise refused(exc) from None
        finally:
            tmp.unlink(missing_ok=True)
        kick.set()
        return web.json_response(done, status=201)

    async def post_statement(request: web.Request) -> web.Response:
        require_role(request, "source")
        try:
            doc = await json_body(request)
            if not isinstance(doc, dict):
                raise UploadRefusedError("expected a JSON object")
            statement = base64_field(doc, "statement")
            signatures = base64_field(doc, "signatures")
            text = base64_field(doc, "pkgbuild") if "pkgbuild" in doc else None
            async with lock:
                done = await asyncio.to_thread(
                    intake.add_statement, policy.get(), statement, signatures, text
                )
        except ValueError as exc:
            raise web.HTTPBadRequest(text=f"malformed request: {exc}") from None
        except UploadFormatError as exc:
            raise web.HTTPBadRequest(text=f"malformed request: {exc.message}") from None
        except UploadRefusedError as exc:
            raise refused(exc) from None
        kick.set()
        return web.json_response(done, status=201)

    async def status_doc() -> dict[str, Any]:
        doc = await asyncio.to_thread(intake.status, policy.get())
        recent = await asyncio.to_thread(cycles.all, 20)
        published = await asyncio.to_thread(cycles.published_sources)
        doc["cycles"] = [c.to_json() for c in recent]
        parked = await asyncio.to_thread(cycles.parked_list)
        doc["parked"] = parked
        held = {(p["pkgbase"], p["commit"]) for p in parked}
        doc["ready"] = [
            w for w in doc["ready"] if _source(w) not in published and _source(w)[1:] not in held
        ]
        if mirror is not None:  # loud: a signature about to lapse with no refresh yet
            found = await asyncio.to_thread(expiries, mirror)
            doc["alerts"] = [e.to_json() for e in found if e.seconds_left < DAY]
            doc["published"] = [
                e.to_json() | {"db_sha256": hashlib.sha256(e.db.read_bytes()).hexdigest()}
                for e in found
            ]
        return doc

    async def get_status(request: web.Request) -> web.Response:
        require_role(request, "repo", "source", "builder")
        return web.json_response(await status_doc())

    app[METRICS] = metrics
    metrics.gauges(lambda: _sampled(queue, cycles, folder, mirror), REPO_GAUGES)
    app[PUBLIC] = _public_app(status_doc, metrics, folder, hostcheck_dir)

    app.router.add_post("/builds", post_build)
    app.router.add_post("/statements", post_statement)
    app.router.add_get("/status", get_status)
    return app


REPO_GAUGES = {
    "reposeal_queue_jobs": "Jobs in the enclave's queue, by state.",
    "reposeal_log_entries": "Entries in the repo machine's copy of the log.",
    "reposeal_signature_expiry_hours": "Hours until each published database signature expires.",
    "reposeal_signature_expiry_hours_min": "Hours until the earliest database signature expires.",
    "reposeal_parked": "Sources parked after a refusal.",
}


def _sampled(
    queue: JobQueue, cycles: Cycles, folder: Path, mirror: Path | None
) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """The gauges' values now (read at each scrape)."""
    from reposeal.repo.logmirror import LogCopy

    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {
        "reposeal_queue_jobs": {(("state", k),): float(n) for k, n in queue.depths().items()},
        "reposeal_log_entries": {(): float(LogCopy(queue.folder / "log").size)},
        "reposeal_parked": {(): float(len(cycles.parked_list()))},
    }
    if mirror is not None:
        found = expiries(mirror)
        out["reposeal_signature_expiry_hours"] = {
            (("repo", e.repo), ("arch", e.arch)): e.seconds_left / 3600 for e in found
        }
        if found:
            out["reposeal_signature_expiry_hours_min"] = {
                (): min(e.seconds_left for e in found) / 3600
            }
    return out


def _public_app(
    status: Callable[[], Awaitable[dict[str, Any]]],
    metrics: Metrics,
    folder: Path,
    hostcheck_dir: Path | None,
) -> web.Application:
    """What anyone may read, on its own plain-HTTP listener (``--public-listen``): the status
    page, the same as JSON, and the metrics."""
    from reposeal.statuspages import render_repo

    async def page(request: web.Request) -> web.Response:
        doc = await status()
        doc["log"] = await asyncio.to_thread(_log_tail, folder)
        if hostcheck_dir is not None:
            from reposeal.metrics import read_hostchecks

            doc["hostchecks"] = await asyncio.to_thread(read_hostchecks, hostcheck_dir)
        return web.Response(body=render_repo(doc), content_type="text/html", charset="utf-8")

    async def as_json(request: web.Request) -> web.Response:
        return web.json_response(await status())

    public = web.Application()
    public.router.add_get("/", page)
    public.router.add_get("/status.json", as_json)
    add_route(public, metrics)
    return public


def _log_tail(folder: Path, n: int = 20) -> dict[str, Any]:
    """The newest ``n`` entries of the repo machine's copy of the log, parsed for showing
    (an entry that does not parse is shown as such)."""
    from reposeal.repo.logmirror import LogCopy
    from reposeal.translog.store import TransparencyLog

    copy = LogCopy(folder / "queue" / "log")
    with TransparencyLog(copy.folder / "log.sqlite") as log:
        size = log.size
        raw = log.entries(max(0, size - n), size) if size else []
    entries = []
    for i, data in enumerate(raw, max(0, size - n)):
        try:
            doc = json.loads(data)
        except ValueError:
            doc = {"type": "unreadable"}
        entries.append((i, doc if isinstance(doc, dict) else {"type": "unreadable"}))
    return {"size": size, "entries": list(reversed(entries))}
