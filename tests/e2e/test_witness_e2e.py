"""`reposeal witness serve` over a real socket: it cosigns consistent checkpoints only,
answers with the spec's codes, and keeps what it cosigned across kill -9, so it never
cosigns two inconsistent checkpoints of one log."""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from reposeal.translog.cosignature import CosignerKey, add_cosignatures, cosignatures
from tests.tools import WitnessProcess
from tests.witness.test_protocol import LOG, ORIGIN, body, note, proof

pytestmark = pytest.mark.e2e


def post(url: str, data: bytes) -> tuple[int, bytes, str]:
    req = urllib.request.Request(f"{url}/add-checkpoint", data=data, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read(), resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers.get("Content-Type", "")


@pytest.fixture
def witness(tmp_path: Path) -> Iterator[WitnessProcess]:
    w = WitnessProcess(tmp_path, "witness.example/w1", [LOG.verifier.encode()]).start()
    yield w
    w.stop()


def test_the_witness_cosigns_consistent_checkpoints_only_across_kill_9(
    witness: WitnessProcess,
) -> None:
    key = CosignerKey.decode(witness.vkey)
    status, line, _ = post(witness.url, body(0, (), note(5)))
    assert status == 200 and line.startswith("— witness.example/w1 ".encode()), line
    assert set(cosignatures(add_cosignatures(note(5), [line.decode()]), [key])) == {key.name}

    status, size, kind = post(witness.url, body(0, (), note(7)))  # behind: told the size
    assert (status, size, kind) == (409, b"5\n", "text/x.tlog.size")

    witness.kill()  # what it cosigned was stored before it answered
    witness.start()
    status, _, _ = post(witness.url, body(5, proof(5, 9, fork=1), note(9, fork=1)))
    assert status == 422, "a fork of what it cosigned before the kill"
    assert post(witness.url, body(5, proof(5, 9), note(9)))[0] == 200

    for hostile, code in ((b"old 9\n\n" + b"\xff" * 100, 400), (b"x" * (80 << 10), 413)):
        assert post(witness.url, hostile)[0] == code
    assert post(witness.url, body(9, (), note(9)))[0] == 200, "nothing hostile was stored"

    wanted = hashlib.sha256(ORIGIN.encode()).hexdigest()
    with urllib.request.urlopen(f"{witness.url}/{wanted}/checkpoint", timeout=10) as resp:
        latest = resp.read()
    assert b"\n9\n" in latest and set(cosignatures(latest, [key])) == {key.name}
    with pytest.raises(urllib.error.HTTPError, match="404"):
        urllib.request.urlopen(f"{witness.url}/{'0' * 64}/checkpoint", timeout=10)
