"""What the repo machine's bridge answers is hostile input to the enclave: an answer that is
not JSON, nested past any parser's depth, of the wrong shape or with a field of the wrong
type is a BridgeError (the enclave logs it and retries), never an exception that stops
`enclave run`. A real HTTPS server on 127.0.0.1 plays the lying bridge."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from reposeal.protocol.bridge_client import BridgeClient, BridgeError
from reposeal.tls import client_context, issue, make_ca, server_context

ANSWERS: dict[str, bytes] = {}  # path -> the body the lying bridge sends (200)


@pytest.fixture
def bridge(tmp_path: Path) -> Iterator[BridgeClient]:
    ca = make_ca(tmp_path / "pki")
    server = issue(ca, tmp_path / "pki", "bridge", "bridge", server_ip="127.0.0.1")
    enclave = issue(ca, tmp_path / "pki", "enclave", "enclave")

    async def answer(request: web.Request) -> web.Response:
        return web.Response(body=ANSWERS[request.path], content_type="application/json")

    app = web.Application()
    for path in ("/jobs/next", "/jobs/release", "/log", "/log/files", "/jobs/j/result"):
        app.router.add_route("*", path, answer)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_context(server, ca.cert))
    loop.run_until_complete(site.start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    client = BridgeClient(
        f"https://127.0.0.1:{runner.addresses[0][1]}", client_context(enclave, ca.cert)
    )
    try:
        yield client
    finally:
        client.close()
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


DEEP = b"[" * 200_000 + b"]" * 200_000


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/jobs/next", b"not json", "not JSON"),
        ("/jobs/next", DEEP, "not JSON"),
        ("/jobs/next", b"[1, 2]", "not a JSON object"),
        ("/jobs/next", b'"a job"', "not a JSON object"),
        ("/jobs/release", b'{"released": "many"}', "released"),
        ("/jobs/release", b"{}", "released"),
        ("/log", b'{"size": -1}', "size"),
        ("/log", b"[]", "not a JSON object"),
        ("/log/files", b'{"new": true}', "new"),
        ("/log/files", b"\xff\xfe", "not JSON"),
    ],
)
def test_a_lying_bridge_is_a_bridge_error(
    bridge: BridgeClient, path: str, body: bytes, message: str
) -> None:
    ANSWERS[path] = body
    calls = {
        "/jobs/next": lambda: bridge.next_job(0),
        "/jobs/release": bridge.release,
        "/log": bridge.log_head,
        "/log/files": lambda: bridge.push_log_files({"x": b"y"}),
    }
    with pytest.raises(BridgeError, match=message):
        calls[path]()


def test_an_honest_answer_reads(bridge: BridgeClient) -> None:
    ANSWERS["/log"] = b'{"size": 3, "checkpoint": "origin\\n3\\n"}'
    ANSWERS["/jobs/release"] = b'{"released": 2}'
    ANSWERS["/log/files"] = b'{"new": 1}'
    assert bridge.log_head() == (3, b"origin\n3\n")
    assert bridge.release() == 2 and bridge.push_log_files({"x": b"y"}) == 1
