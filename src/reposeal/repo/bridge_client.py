"""A small HTTPS client for the bridge (both sides use it): mutual TLS, pinned CA."""

from __future__ import annotations

import hashlib
import http.client
import json
import ssl
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from reposeal.errors import ReposealError


class BridgeError(ReposealError):
    """The bridge refused a request or could not be reached."""


class BridgeClient:
    def __init__(self, url: str, context: ssl.SSLContext, timeout: float = 90.0) -> None:
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            raise BridgeError(f"the bridge URL must be https://HOST:PORT, not {url!r}")
        self.host, self.port = parts.hostname, parts.port or 443
        self.context = context
        self.timeout = timeout

    def _request(
        self,
        method: str,
        path: str,
        body: bytes | BinaryIO | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        conn = http.client.HTTPSConnection(
            self.host, self.port, context=self.context, timeout=self.timeout
        )
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.read()
        except ssl.SSLError as exc:
            raise BridgeError(
                f"TLS with the bridge failed ({exc.reason}): is it the pinned "
                "bridge, and is our certificate one it accepts?"
            ) from None
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            raise BridgeError(
                "the bridge closed the TLS connection: it refused our certificate (TLS 1.3 "
                "reports this only after the handshake)"
            ) from None
        except OSError as exc:
            raise BridgeError(
                f"cannot reach the bridge at {self.host}:{self.port}: {exc}"
            ) from None
        finally:
            conn.close()

    def _json(self, method: str, path: str, doc: Any = None) -> tuple[int, Any]:
        body = json.dumps(doc).encode() if doc is not None else None
        status, data = self._request(method, path, body, {"Content-Type": "application/json"})
        if status >= 400:
            raise BridgeError(f"{method} {path}: {status} {data.decode(errors='replace')[:200]}")
        return status, json.loads(data) if data else None

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

    def job(self, job_id: str) -> dict[str, Any]:
        return dict(self._json("GET", f"/jobs/{job_id}")[1])

    def next_job(self, wait: float) -> dict[str, Any] | None:
        status, doc = self._json("GET", f"/jobs/next?wait={wait:.0f}")
        return None if status == 204 else dict(doc)

    def fetch_blob(self, digest: str, target: Path, limit: int) -> None:
        """Stream a blob to ``target``, refusing more than ``limit`` bytes or a wrong hash."""
        conn = http.client.HTTPSConnection(
            self.host, self.port, context=self.context, timeout=self.timeout
        )
        try:
            conn.request("GET", f"/blobs/{digest}")
            resp = conn.getresponse()
            if resp.status != 200:
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
        except (ssl.SSLError, OSError) as exc:
            raise BridgeError(f"downloading blob {digest[:16]}… failed: {exc}") from None
        finally:
            conn.close()

    def post_result(self, job_id: str, result: dict[str, Any]) -> None:
        self._json("POST", f"/jobs/{job_id}/result", result)
