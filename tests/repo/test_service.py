"""The repo machine's service in-process, over real mutual TLS on 127.0.0.1: each upload
route takes only its role, a build upload's header is read strictly (every malformed part a
400 that says which, before any package byte is kept), and a refused upload leaves nothing
behind. (The whole intake, with real packages and quorums, is ``test_repo_intake_e2e``.)"""

from __future__ import annotations

import asyncio
import json
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from reposeal.alpm.limits import MAX_HEADER
from reposeal.protocol.bridge_client import BridgeClient
from reposeal.protocol.uploads import UploadHeader
from reposeal.repo.service import PolicyFile, make_service
from reposeal.tls import Issued, client_context, issue, make_ca, server_context
from tests.e2e.test_enclave_e2e import write_signed
from tests.policy.world import World

ROLES = ("builder", "source", "enclave", "maintainer")


@pytest.fixture
def service(tmp_path: Path, world: World) -> Iterator[tuple[dict[str, BridgeClient], Path]]:
    """The service on a free port in a thread of its own; a client for each role, and the
    folder it keeps its blobs in."""
    ca = make_ca(tmp_path / "pki")
    bridge = issue(ca, tmp_path / "pki", "bridge", "bridge", server_ip="127.0.0.1")
    write_signed(tmp_path / "policy.json", world.policy().to_bytes(), world.admins[:2])
    app = make_service(tmp_path / "srv", PolicyFile(tmp_path / "policy.json"))
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_context(bridge, ca.cert))
    loop.run_until_complete(site.start())
    port = runner.addresses[0][1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    clients = {}
    for role in ROLES:
        cert: Issued = issue(ca, tmp_path / "pki", role, role)
        clients[role] = BridgeClient(f"https://127.0.0.1:{port}", client_context(cert, ca.cert))
    try:
        yield clients, tmp_path / "srv" / "queue" / "blobs"
    finally:
        for c in clients.values():
            c.close()
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def _post(client: BridgeClient, path: str, body: bytes) -> tuple[int, str]:
    status, data = client._request("POST", path, body, {"Content-Length": str(len(body))})
    return status, data.decode(errors="replace")


def _framed(header: bytes) -> bytes:
    return struct.pack(">I", len(header)) + header + b"the package's bytes"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\x00\x00", "ends early"),
        (struct.pack(">I", MAX_HEADER + 1) + b"{}", f"larger than {MAX_HEADER} bytes"),
        (struct.pack(">I", 10) + b"{}", "ends early"),
        (_framed(b"nope!"), "not JSON"),
        (_framed(b"[]"), "not a JSON object"),
        (_framed(b'{"statement": 1}'), "lacks 'statement'"),
        (_framed(b'{"statement": "eA==", "signatures": "!!"}'), "'signatures' is not valid base64"),
    ],
)
def test_a_malformed_build_upload_is_a_400_that_keeps_nothing(
    service: tuple[dict[str, BridgeClient], Path], body: bytes, message: str
) -> None:
    clients, blobs = service
    status, text = _post(clients["builder"], "/builds", body)
    assert status == 400 and message in text, (status, text)
    assert not list(blobs.iterdir()), "nothing of it kept"


def test_a_statement_not_in_base64_is_a_400(
    service: tuple[dict[str, BridgeClient], Path],
) -> None:
    clients, _ = service
    for doc, message in (
        ({"statement": "eA==", "signatures": "eA==", "pkgbuild": "not base64!"}, "'pkgbuild'"),
        ({"statement": 5, "signatures": "eA=="}, "lacks 'statement'"),
        ([1], "expected a JSON object"),
    ):
        status, text = _post(clients["source"], "/statements", json.dumps(doc).encode())
        assert status in (400, 422) and message in text, (status, text)


def test_each_route_takes_only_its_role(service: tuple[dict[str, BridgeClient], Path]) -> None:
    clients, blobs = service
    header = UploadHeader(b"{}", b"").to_bytes()
    for role in ("source", "enclave", "maintainer"):
        assert _post(clients[role], "/builds", header)[0] == 403, role
    for role in ("builder", "enclave", "maintainer"):
        assert _post(clients[role], "/statements", b"{}")[0] == 403, role
    assert not list(blobs.iterdir())
    assert clients["builder"].status()["waiting"] == []


def test_one_client_shared_by_threads_sends_one_request_at_a_time(
    service: tuple[dict[str, BridgeClient], Path],
) -> None:
    """The source machine forwards approvals from its request handlers and from its watcher,
    each in a thread, through one client: its kept-alive connection carries one request at
    a time (without that, http.client raised CannotSendRequest and an approval failed)."""
    from concurrent.futures import ThreadPoolExecutor

    clients, _ = service
    client = clients["builder"]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: client.status()["waiting"], range(64)))
    assert answers == [[]] * 64


def test_a_body_nested_past_the_parser_is_a_400(
    service: tuple[dict[str, BridgeClient], Path],
) -> None:
    clients, _ = service
    deep = b"[" * 200_000 + b"]" * 200_000
    status, text = _post(clients["source"], "/statements", deep)
    assert status == 400 and "not JSON" in text, (status, text)
    assert _post(clients["source"], "/statements", b"\xff")[0] == 400
