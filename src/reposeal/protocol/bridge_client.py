"""A small HTTPS client for the bridge (both sides use it): mutual TLS, pinned CA."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from reposeal.errors import ReposealError
from reposeal.protocol import wire
from reposeal.protocol.uploads import UploadHeader


class BridgeError(ReposealError):
    """The bridge refused a request or could not be reached."""


IDLE_REOPEN = 50.0  # seconds: aiohttp keeps an idle connection 75 s; reopen well before


class BridgeClient:
    def __init__(self, url: str, context: ssl.SSLContext, timeout: float = 90.0) -> None:
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            raise BridgeError(f"the bridge URL must be https://HOST:PORT, not {url!r}")
        self.host, self.port = parts.hostname, parts.port or 443
        self.context = context
        self.timeout = timeout
        self._conn: http.client.HTTPSConnection | None = None
        self._used = 0.0  # when the kept-alive connection last carried a request
        # one request at a time on the one connection, whichever thread asks (a service's
        # handlers and its background loop share a client)
        self._one_at_a_time = threading.Lock()

    def clone(self) -> BridgeClient:
        """The same bridge and credentials, on a connection of its own (for a thread)."""
        return BridgeClient(f"https://{self.host}:{self.port}", self.context, self.timeout)

    def _connect(self) -> http.client.HTTPSConnection:
        """The kept-alive connection (one TLS handshake for many requests), or a new one."""
        if self._conn is None:
            self._conn = http.client.HTTPSConnection(
                self.host, self.port, context=self.context, timeout=self.timeout
            )
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _exchange(
        self,
        method: str,
        path: str,
        body: bytes | BinaryIO | _Concat | None,
        headers: dict[str, str],
        sink: Callable[[http.client.HTTPResponse], bytes],
    ) -> tuple[int, bytes]:
        """One request on the kept-alive connection; a connection the bridge closed while
        idle (its keep-alive ran out, it restarted) is opened again once, whatever error the
        dead connection gives (every request here can be repeated safely)."""
        with self._one_at_a_time:
            if self._conn is not None and time.monotonic() - self._used > IDLE_REOPEN:
                self.close()  # idle past what servers keep: a fresh one, before it fails
            for attempt in (1, 2):
                reused = self._conn is not None
                conn = self._connect()
                self._used = time.monotonic()
                try:
                    if attempt == 2 and hasattr(body, "seek"):
                        body.seek(0)  # type: ignore[union-attr]
                    conn.request(method, path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = sink(resp)
                    if resp.will_close:
                        self.close()
                    return resp.status, data
                except ssl.SSLError as exc:
                    self.close()
                    if reused and attempt == 1:
                        continue  # the bridge dropped an idle connection (TLS says so oddly)
                    raise BridgeError(
                        f"TLS with the bridge failed ({exc.reason}): is it the pinned "
                        "bridge, and is our certificate one it accepts?"
                    ) from None
                except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                    self.close()
                    if reused and attempt == 1:
                        continue
                    raise BridgeError(
                        "the bridge closed the TLS connection: it refused our certificate (TLS "
                        "1.3 reports this only after the handshake)"
                    ) from None
                except BridgeError:
                    self.close()
                    raise
                except OSError as exc:
                    self.close()
                    if reused and attempt == 1:
                        continue
                    raise BridgeError(
                        f"cannot reach the bridge at {self.host}:{self.port}: {exc}"
                    ) from None
            raise AssertionError("unreachable")

    def _request(
        self,
        method: str,
        path: str,
        body: bytes | BinaryIO | _Concat | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        return self._exchange(method, path, body, headers or {}, lambda r: r.read())

    def _json(self, method: str, path: str, doc: Any = None) -> tuple[int, Any]:
        body = json.dumps(doc).encode() if doc is not None else None
        status, data = self._request(method, path, body, {"Content-Type": "application/json"})
        if status >= 400:
            raise BridgeError(f"{method} {path}: {status} {data.decode(errors='replace')[:200]}")
        return status, answer_json(data, f"{method} {path}") if data else None

    def put_blob(self, path: Path) -> str:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        digest = h.hexdigest()
        with open(path, "rb") as f:
            status, data = self._request(
                "PUT", f"/blobs/{digest}", f, {"Content-Length": str(path.stat().st_size)}
            )
        if status >= 400:
            raise BridgeError(f"upload of {path.name}: {status} {data.decode(errors='replace')}")
        return digest

    def submit(self, job: dict[str, Any]) -> None:
        self._json("POST", "/jobs", job)

    def submit_transition(
        self,
        job_id: str,
        kind: str,
        repo: str,
        arch: str,
        changes: tuple[Sequence[Path], Sequence[tuple[str, Path]], Sequence[str]],
        evidence: Path | None = None,
        parent: str | None = None,
    ) -> int:
        """Upload a job's files and queue it (repo role): a transition of ``repo/arch``,
        ``changes`` being (files to add, (layer, file) moving up from a layer, names to
        remove), or a refresh (``kind``) of its latest databases. ``parent``: the sync
        database the job starts from (for a refresh, the one it expects), "none" for the
        first. The number of files uploaded."""
        adds, moved, removes = changes
        files: dict[str, str] = {}
        for p in [*adds, *(f for _, f in moved)]:
            files[f"packages/{p.name}"] = self.put_blob(p)
        for p in sorted(evidence.iterdir()) if evidence else []:
            if p.name.endswith((".json", ".json.sig")):
                files[f"evidence/{p.name}"] = self.put_blob(p)
        job: dict[str, object] = {
            "id": job_id,
            "kind": kind,
            "repo": repo,
            "arch": arch,
            "files": files,
            "add": [p.name for p in adds],
            "moves": [{"file": f.name, "from": layer} for layer, f in moved],
            "remove": list(removes),
        }
        if parent is not None:
            job["parent" if kind == "transition" else "expect"] = (
                None if parent == "none" else parent
            )
        self.submit(job)
        return len(files)

    def job(self, job_id: str) -> dict[str, Any]:
        return _object(self._json("GET", f"/jobs/{job_id}")[1], f"GET /jobs/{job_id}")

    def next_job(self, wait: float, inline: int = 0) -> dict[str, Any] | None:
        """The next job; with ``inline``, small files (up to that many bytes in all) come
        with it under "inline" (path -> base64), to be hash-checked by the caller."""
        status, doc = self._json("GET", f"/jobs/next?wait={wait:.0f}&inline={inline}")
        return None if status == 204 else _object(doc, "GET /jobs/next")

    def fetch_blob(self, digest: str, target: Path, limit: int) -> None:
        """Stream a blob to ``target``, refusing more than ``limit`` bytes or a wrong hash."""

        def save(resp: http.client.HTTPResponse) -> bytes:
            if resp.status != 200:
                resp.read()
                raise BridgeError(f"blob {digest[:16]}…: {resp.status}")
            target.parent.mkdir(parents=True, exist_ok=True)
            h, size = hashlib.sha256(), 0
            with open(target, "wb") as f:
                while chunk := resp.read(1 << 20):
                    size += len(chunk)
                    if size > limit:
                        raise BridgeError(f"blob {digest[:16]}… is larger than {limit} bytes")
                    h.update(chunk)
                    f.write(chunk)
            if h.hexdigest() != digest:
                raise BridgeError(f"blob {digest[:16]}… does not match its hash")
            return b""

        self._exchange("GET", f"/blobs/{digest}", None, {}, save)

    # --- the repo service's intake (builders, the source machine, status) ----------------

    def upload_build(self, package: Path, statement: bytes, signatures: bytes) -> dict[str, Any]:
        """Send a built package with its signed build statement (builder role)."""
        with _Concat(UploadHeader(statement, signatures).to_bytes(), package) as body:
            headers = {"Content-Length": str(body.size)}
            status, data = self._request("POST", "/builds", body, headers)
        return self._answer("POST /builds", status, data)

    def push_statement(
        self, statement: bytes, signatures: bytes, pkgbuild: bytes | None = None
    ) -> dict[str, Any]:
        """Send an approval (with the text of the PKGBUILD it approves, for the mirrors), a
        removal request or a withdrawal (source role)."""
        import base64

        doc = {
            "statement": base64.b64encode(statement).decode(),
            "signatures": base64.b64encode(signatures).decode(),
        }
        if pkgbuild is not None:
            doc["pkgbuild"] = base64.b64encode(pkgbuild).decode()
        body = json.dumps(doc).encode()
        status, data = self._request(
            "POST", "/statements", body, {"Content-Type": "application/json"}
        )
        return self._answer("POST /statements", status, data)

    def status(self) -> dict[str, Any]:
        return _object(self._json("GET", "/status")[1], "GET /status")

    @staticmethod
    def _answer(what: str, status: int, data: bytes) -> dict[str, Any]:
        if status >= 400:
            raise BridgeError(f"{what}: {status} {data.decode(errors='replace')[:300]}")
        return _object(answer_json(data, what), what)

    def release(self) -> int:
        """Ask the bridge to hand out again the jobs this enclave had taken (at start-up)."""
        doc = _object(self._json("POST", "/jobs/release", {})[1], "POST /jobs/release")
        return _count(doc, "released", "POST /jobs/release")

    def post_result(self, job_id: str, result: dict[str, Any]) -> None:
        self._json("POST", f"/jobs/{job_id}/result", result)

    def log_size(self) -> int:
        """How many entries the bridge's copy of the log holds."""
        return self.log_head()[0]

    def log_head(self) -> tuple[int, bytes | None]:
        """The size of the bridge's copy of the log and the checkpoint note it holds."""
        doc = _object(self._json("GET", "/log")[1], "GET /log")
        note = doc.get("checkpoint")
        return _count(doc, "size", "GET /log"), note.encode() if isinstance(note, str) else None

    def push_log_files(self, files: dict[str, bytes]) -> int:
        """Send the files the next entries name (before the entries); how many were new."""
        from reposeal.alpm.tarformat import END_OF_ARCHIVE, tar_member

        body = b"".join(tar_member(n, d, 0) for n, d in sorted(files.items())) + END_OF_ARCHIVE
        status, data = self._request(
            "POST", "/log/files", body, {"Content-Type": "application/x-tar"}
        )
        if status >= 400:
            raise BridgeError(f"POST /log/files: {status} {data.decode(errors='replace')[:200]}")
        doc = _object(answer_json(data, "POST /log/files"), "POST /log/files")
        return _count(doc, "new", "POST /log/files")

    def push_log(
        self, start: int, entries: list[bytes], checkpoint: bytes, signature: bytes | None
    ) -> tuple[bool, int]:
        """Send what the log gained from ``start``; (kept, the copy's size now). Not kept
        (409): the copy holds another size, or the checkpoint does not hold."""
        doc = {
            "start": start,
            "entries": [base64.b64encode(e).decode() for e in entries],
            "checkpoint": checkpoint.decode(),
            "signature": base64.b64encode(signature).decode() if signature else None,
        }
        status, data = self._request(
            "POST", "/log", json.dumps(doc).encode(), {"Content-Type": "application/json"}
        )
        if status >= 400 and status != 409:
            raise BridgeError(f"POST /log: {status} {data.decode(errors='replace')[:200]}")
        doc = _object(answer_json(data, "POST /log"), "POST /log")
        return status != 409, _count(doc, "size", "POST /log")


def answer_json(data: bytes, what: str) -> Any:
    """The other machine's answer, whatever JSON it is; BridgeError if it is not JSON."""
    try:
        return wire.loads(data, what)
    except wire.WireFormatError as exc:
        raise BridgeError(exc.message) from None


def _object(doc: Any, what: str) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise BridgeError(f"{what}: not a JSON object")
    return doc


def _count(doc: dict[str, Any], key: str, what: str) -> int:
    try:
        return wire.count(doc, key, what)
    except wire.WireFormatError as exc:
        raise BridgeError(exc.message) from None


class _Concat:
    """A header, then a file: a request body that streams and can start over (retry)."""

    def __init__(self, head: bytes, path: Path) -> None:
        self.head, self.file = head, open(path, "rb")  # noqa: SIM115  (closed by __exit__)
        self.size = len(head) + os.fstat(self.file.fileno()).st_size
        self.pos = 0

    def __enter__(self) -> _Concat:
        return self

    def __exit__(self, *exc: object) -> None:
        self.file.close()

    def seek(self, pos: int) -> None:
        if pos != 0:
            raise ValueError("a streamed request body starts over from its beginning only")
        self.pos = 0
        self.file.seek(0)

    def read(self, n: int = -1) -> bytes:
        if self.pos < len(self.head):
            end = len(self.head) if n < 0 else min(len(self.head), self.pos + n)
            out = self.head[self.pos : end]
            self.pos = end
            return out
        return self.file.read(n)
