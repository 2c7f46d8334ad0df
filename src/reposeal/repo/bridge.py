"""The bridge: the repo machine's job queue that the enclave polls (the enclave opens no port).

HTTPS with mutual TLS; every endpoint checks the role in the caller's *verified* client
certificate (aiohttp hands it to the handler). Jobs and blobs live in SQLite and a blob
folder; jobs are idempotent by id: the same job submitted twice is one job, a result posted
twice must be the same result.

    PUT  /blobs/{sha256}        repo     upload a blob (hash checked while streaming)
    POST /jobs                  repo     {id, kind, repo, arch, files: {path: sha256}}
    GET  /jobs/{id}             repo     state and result
    GET  /jobs/next?wait=SEC&inline=BYTES
                                enclave  long-poll for the next job (small files inline)
    GET  /blobs/{sha256}        enclave  download a blob
    POST /jobs/{id}/result      enclave  the receipt (signature, log index, ...) or refusal
    POST /jobs/release          enclave  at start-up: what it had taken is handed out again
    GET  /log                   enclave, repo   the size of the repo machine's log copy
    POST /log                   enclave  {start, entries, checkpoint, signature}: what the
                                         log gained (see ``reposeal.repo.logmirror``)
    POST /log/files             enclave  a tar of the files those entries name, before them
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from reposeal.alpm.limits import MAX_BLOB, MAX_FILES_BYTES, MAX_INLINE, MAX_JOB_RESULT, MAX_JSON
from reposeal.errors import ReposealError
from reposeal.fsio import atomic_write
from reposeal.protocol import wire
from reposeal.protocol.jobformat import FIELDS, SHA256, BridgeJob
from reposeal.protocol.roles import require_role
from reposeal.protocol.wire import json_body
from reposeal.repo.logmirror import LogCopy, LogPushError
from reposeal.sqldb import open_db, transaction

# an answer carries the database chunks the enclave wrote: a repository's first database
# (an adoption of 14,000 packages) is tens of MiB
LEASE_SECONDS = float(os.environ.get("REPOSEAL_BRIDGE_LEASE", "300"))  # then handed out again


class JobQueue:
    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.blobs = folder / "blobs"
        self.blobs.mkdir(exist_ok=True)
        self.db = open_db(
            folder / "queue.sqlite",
            "CREATE TABLE IF NOT EXISTS job (id TEXT PRIMARY KEY, spec TEXT NOT NULL, "
            "state TEXT NOT NULL, taken REAL, result TEXT, created REAL NOT NULL);",
        )
        # the next job is found without reading the history of every finished one
        self.db.execute("CREATE INDEX IF NOT EXISTS job_waiting ON job (state, created)")

    def depths(self) -> dict[str, int]:
        """How many jobs are in each state (pending, taken, done)."""
        rows = self.db.execute("SELECT state, COUNT(*) FROM job GROUP BY state").fetchall()
        return {"pending": 0, "taken": 0, "done": 0} | {str(s): int(n) for s, n in rows}

    def keep_blob(self, data: bytes) -> str:
        """Keep ``data`` where jobs' files are served from; return its sha256."""
        digest = hashlib.sha256(data).hexdigest()
        if not (self.blobs / digest).exists():
            atomic_write(self.blobs / digest, data)
        return digest

    def submit(self, spec: dict[str, Any]) -> bool:
        """Queue a job; True if new. The same id with another spec is refused."""
        raw = json.dumps(spec, sort_keys=True)
        row = self.db.execute("SELECT spec FROM job WHERE id=?", (spec["id"],)).fetchone()
        if row is not None:
            if row[0] != raw:
                raise ValueError(f"job {spec['id']} exists with a different content")
            return False
        self.db.execute(
            "INSERT INTO job VALUES (?, ?, 'pending', NULL, NULL, ?)",
            (spec["id"], raw, time.time()),
        )
        return True

    def take(self) -> dict[str, Any] | None:
        now = time.time()
        with transaction(self.db) as db:
            row = (
                db.execute(
                    "SELECT id, spec FROM job WHERE state='pending' ORDER BY created LIMIT 1"
                ).fetchone()
                or db.execute(
                    "SELECT id, spec FROM job WHERE state='taken' AND taken < ? "
                    "ORDER BY created LIMIT 1",
                    (now - LEASE_SECONDS,),
                ).fetchone()
            )
            if row is not None:
                db.execute("UPDATE job SET state='taken', taken=? WHERE id=?", (now, row[0]))
        return None if row is None else dict(json.loads(row[1]))

    def release(self) -> int:
        """Hand out again every job taken and not answered: the (only) enclave restarted,
        so nothing it took before is in its hands any more. Returns how many."""
        cur = self.db.execute("UPDATE job SET state='pending', taken=NULL WHERE state='taken'")
        return int(cur.rowcount)

    def finish(self, job_id: str, result: dict[str, Any]) -> bool:
        """Store the result; True if stored now, False if the same was stored before."""
        raw = json.dumps(result, sort_keys=True)
        row = self.db.execute("SELECT result FROM job WHERE id=?", (job_id,)).fetchone()
        if row is None:
            raise KeyError(job_id)
        if row[0] is not None:
            if row[0] != raw:
                raise ValueError(f"job {job_id} already has a different result")
            return False
        self.db.execute("UPDATE job SET state='done', result=? WHERE id=?", (raw, job_id))
        return True

    def get(self, job_id: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT state, result FROM job WHERE id=?", (job_id,)).fetchone()
        if row is None:
            return None
        return {"id": job_id, "state": row[0], "result": json.loads(row[1]) if row[1] else None}


class Signals:
    """Wake-ups inside the service: a job was queued (long polls look at once), a result
    or an upload arrived (the update cycle looks at once)."""

    def __init__(self) -> None:
        self.jobs = asyncio.Event()
        self.results = asyncio.Event()

    async def wait_jobs(self, timeout: float) -> None:
        """Until a job is queued (callers clear ``jobs`` before they look) or ``timeout``."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.jobs.wait(), timeout)


SIGNALS = web.AppKey("signals", Signals)


def make_app(
    queue: JobQueue, signals: Signals | None = None, log: LogCopy | None = None
) -> web.Application:
    app = web.Application(client_max_size=MAX_JSON)
    signals = signals or Signals()
    app[SIGNALS] = signals
    log = log or LogCopy(queue.folder / "log")

    async def get_log(request: web.Request) -> web.Response:
        require_role(request, "enclave", "repo")
        size, note = await asyncio.to_thread(log.head)
        return web.json_response({"size": size, "checkpoint": note.decode() if note else None})

    async def post_log_files(request: web.Request) -> web.Response:
        """The files the next entries name (a tar), pushed before them."""
        require_role(request, "enclave")
        body = bytearray()
        async for chunk in request.content.iter_chunked(1 << 20):
            body += chunk
            if len(body) > MAX_FILES_BYTES:
                raise web.HTTPRequestEntityTooLarge(max_size=MAX_FILES_BYTES, actual_size=len(body))
        try:
            new = await asyncio.to_thread(log.receive_files, bytes(body))
        except LogPushError as exc:
            raise web.HTTPUnprocessableEntity(text=exc.message) from None
        return web.json_response({"new": new})

    async def post_log(request: web.Request) -> web.Response:
        """The enclave pushes what its log gained, with the checkpoint it signed."""
        require_role(request, "enclave")
        try:
            doc = await json_body(request)
            entries = [base64.b64decode(e, validate=True) for e in doc["entries"]]
            note = str(doc["checkpoint"]).encode()
            sig = doc.get("signature")
            signature = base64.b64decode(sig, validate=True) if sig else None
            start = int(doc["start"])
        except (ValueError, KeyError, TypeError) as exc:
            raise web.HTTPBadRequest(
                text=f"a log push is start, entries, checkpoint: {exc}"
            ) from None
        try:
            size = await asyncio.to_thread(log.receive, start, entries, note, signature)
        except LogPushError as exc:
            return web.json_response({"size": log.size, "error": exc.message}, status=409)
        signals.results.set()  # a cycle may wait for the log to cover its signature
        return web.json_response({"size": size})

    async def put_blob(request: web.Request) -> web.Response:
        require_role(request, "repo")
        digest = request.match_info["sha"]
        if not SHA256.fullmatch(digest):
            raise web.HTTPBadRequest(text="blob names are sha256 hex digests")
        target = queue.blobs / digest
        if target.exists():
            return web.json_response({"stored": False})
        tmp = target.with_name(f".{digest}.{id(request)}.tmp")
        h, size = hashlib.sha256(), 0
        with open(tmp, "wb") as f:
            async for chunk in request.content.iter_chunked(1 << 20):
                size += len(chunk)
                if size > MAX_BLOB:
                    tmp.unlink()
                    raise web.HTTPRequestEntityTooLarge(max_size=MAX_BLOB, actual_size=size)
                h.update(chunk)
                f.write(chunk)
        if h.hexdigest() != digest:
            tmp.unlink()
            raise web.HTTPBadRequest(text="the blob does not hash to its name")
        tmp.replace(target)
        return web.json_response({"stored": True}, status=201)

    async def get_blob(request: web.Request) -> web.StreamResponse:
        require_role(request, "enclave")
        digest = request.match_info["sha"]
        if not SHA256.fullmatch(digest) or not (queue.blobs / digest).exists():
            raise web.HTTPNotFound()
        return web.FileResponse(queue.blobs / digest)

    async def post_job(request: web.Request) -> web.Response:
        require_role(request, "repo")
        try:
            spec = await json_body(request)
            if not isinstance(spec, dict):
                raise ValueError("a job is a JSON object")
            job = BridgeJob.from_json(spec)  # as the enclave will read it: the same checks
            if job.kind == "policy" and "policy.json" not in job.files:
                raise ValueError("a policy job names 'policy.json' and 'policy.json.sig'")
            for path, digest in job.files.items():
                if not (queue.blobs / digest).exists():
                    raise ValueError(f"blob for {path} was not uploaded")
            new = queue.submit({k: spec[k] for k in FIELDS if k in spec})
            signals.jobs.set()
        except ReposealError as exc:
            raise web.HTTPBadRequest(text=exc.message) from None
        except (ValueError, KeyError) as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        return web.json_response({"queued": new}, status=201 if new else 200)

    async def next_job(request: web.Request) -> web.Response:
        require_role(request, "enclave")
        try:
            wait = min(max(float(request.query.get("wait", "0") or 0), 0.0), 60.0)
        except ValueError:
            raise web.HTTPBadRequest(text="wait must be a number of seconds") from None
        try:
            inline = min(max(int(request.query.get("inline", "0") or 0), 0), MAX_INLINE)
        except ValueError:
            raise web.HTTPBadRequest(text="inline must be a number of bytes") from None
        deadline = time.monotonic() + wait
        while True:
            if request.transport is None or request.transport.is_closing():
                raise web.HTTPGone()  # the enclave went away: take nothing in its name
            signals.jobs.clear()  # before looking: a job queued after this wakes us
            job = queue.take()
            if job is not None:  # with the newest (cosigned) checkpoint the enclave signed
                size, note = await asyncio.to_thread(log.head)
                head = {"size": size, "checkpoint": note.decode() if note else None}
                return web.json_response(_with_inline(job, inline) | {"log_head": head})
            if time.monotonic() >= deadline:
                return web.Response(status=204)
            await signals.wait_jobs(min(0.5, max(0.0, deadline - time.monotonic())))

    async def release(request: web.Request) -> web.Response:
        require_role(request, "enclave")
        return web.json_response({"released": queue.release()})

    async def post_result(request: web.Request) -> web.Response:
        require_role(request, "enclave")
        body = bytearray()
        async for chunk in request.content.iter_chunked(1 << 20):
            body += chunk
            if len(body) > MAX_JOB_RESULT:
                raise web.HTTPRequestEntityTooLarge(max_size=MAX_JOB_RESULT, actual_size=len(body))
        try:
            answer = wire.loads(bytes(body), "an answer")
        except wire.WireFormatError as exc:
            raise web.HTTPBadRequest(text=exc.message) from None
        try:
            stored = queue.finish(request.match_info["id"], answer)
        except KeyError:
            raise web.HTTPNotFound() from None
        except ValueError as exc:
            raise web.HTTPConflict(text=str(exc)) from None
        signals.results.set()
        return web.json_response({"stored": stored})

    async def get_job(request: web.Request) -> web.Response:
        require_role(request, "repo")
        found = queue.get(request.match_info["id"])
        if found is None:
            raise web.HTTPNotFound()
        return web.json_response(found)

    def _with_inline(job: dict[str, Any], budget: int) -> dict[str, Any]:
        """The job, carrying its small files (up to ``budget`` bytes in all) so the enclave
        needs no request per file; it checks their hashes like any download."""
        inline: dict[str, str] = {}
        for path, digest in sorted(job.get("files", {}).items()):
            size = (queue.blobs / digest).stat().st_size
            if size <= budget:
                inline[path] = base64.b64encode((queue.blobs / digest).read_bytes()).decode()
                budget -= size
        return {**job, "inline": inline} if inline else job

    app.router.add_put("/blobs/{sha}", put_blob)
    app.router.add_get("/blobs/{sha}", get_blob)
    app.router.add_post("/jobs", post_job)
    app.router.add_get("/jobs/next", next_job)
    app.router.add_post("/jobs/release", release)
    app.router.add_post("/jobs/{id}/result", post_result)
    app.router.add_get("/jobs/{id}", get_job)
    app.router.add_get("/log", get_log)
    app.router.add_post("/log", post_log)
    app.router.add_post("/log/files", post_log_files)
    return app
