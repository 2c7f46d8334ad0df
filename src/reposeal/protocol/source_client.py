"""Talking to the source machine (maintainers and builders), over the same kept-alive mutual
TLS connection as the bridge client."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import quote

from reposeal.alpm.limits import MAX_ARCHIVE
from reposeal.protocol.bridge_client import BridgeClient, BridgeError, answer_json
from reposeal.protocol.buildjobs import BuildJob


class SourceError(BridgeError):
    """The source machine refused a request; the message says why."""


class SourceClient(BridgeClient):
    def _call(self, method: str, path: str, doc: Any = None) -> Any:
        body = json.dumps(doc).encode() if doc is not None else None
        status, data = self._request(method, path, body, {"Content-Type": "application/json"})
        if status >= 400:  # the source machine's reason, as it gave it
            raise SourceError(f"refused ({status}): {data.decode(errors='replace')[:500]}")
        return answer_json(data, f"{method} {path}") if data else None

    # maintainers -------------------------------------------------------------------------

    def proposals(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/proposals"))

    def proposal(self, pkgbase: str, commit: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/proposals/{quote(pkgbase)}/{quote(commit)}"))

    def approve(self, statement: bytes, signatures: bytes) -> dict[str, Any]:
        return dict(self._call("POST", "/approvals", _statement(statement, signatures)))

    def withdraw(self, statement: bytes, signatures: bytes) -> dict[str, Any]:
        return dict(self._call("POST", "/withdrawals", _statement(statement, signatures)))

    # builders ----------------------------------------------------------------------------

    def take_build(self, wait: float, arch: str | None = None) -> BuildJob | None:
        """The next job for this builder, each field checked (BuildJobError otherwise)."""
        query = f"wait={wait:g}" + (f"&arch={arch}" if arch else "")
        found = self._call("GET", f"/jobs/next?{query}")
        return BuildJob.from_json(found) if found is not None else None

    def release_builds(self) -> None:
        self._call("POST", "/jobs/release", {})

    def build_source(self, job_id: str) -> bytes:
        status, data = self._request("GET", f"/jobs/{quote(job_id)}/source", None, {})
        if status >= 400 or len(data) > MAX_ARCHIVE:
            raise SourceError(f"source of {job_id}: {status} {data[:200]!r}")
        return data

    def report(self, job_id: str, doc: dict[str, Any]) -> list[str]:
        return list(self._call("POST", f"/jobs/{quote(job_id)}/report", doc)["differences"])


def _statement(statement: bytes, signatures: bytes) -> dict[str, str]:
    return {
        "statement": base64.b64encode(statement).decode(),
        "signatures": base64.b64encode(signatures).decode(),
    }
