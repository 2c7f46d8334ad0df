"""The sandbox's template in-process: a job reads through the channel only what the enclave
hands it, within its limits; the template runs every job in a fresh child, verifies each
policy before a child sees it, and stops when the enclave's requests stop making sense.
(The sandbox itself, bubblewrap and the kill of everything a job left, is the e2e tests'.)"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from reposeal.enclave import channel
from reposeal.enclave.records import state_to_json
from reposeal.enclave.zygote import ChannelJob, serve
from reposeal.errors import LimitExceededError, ReposealError
from reposeal.policy.document import Policy
from reposeal.policy.state import SigningState
from tests.e2e.test_enclave_e2e import write_signed
from tests.policy.world import World


def _fd(path: Path, data: bytes) -> int:
    path.write_bytes(data)
    return os.open(path, os.O_RDONLY)


@pytest.fixture
def enclave_side(tmp_path: Path) -> Iterator[tuple[socket.socket, list[dict[str, object]]]]:
    """The worker's end of a channel, and what the enclave's end was asked (it hands
    ``big`` as 100 bytes, has no ``gone``, and sends its state with or without a file)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    asked: list[dict[str, object]] = []

    def answer() -> None:
        while True:
            try:
                request, _ = channel.receive(theirs, 1 << 20)
            except (channel.ChannelError, OSError):
                return
            asked.append(request)
            if request.get("op") == "open" and request.get("name") == "big":
                channel.send(theirs, {"ok": True}, [_fd(tmp_path / "big", b"b" * 100)])
            elif request.get("op") == "state" and request.get("names") == ["x"]:
                channel.send(theirs, {"ok": True}, [_fd(tmp_path / "s", state_to_json(
                    SigningState()))])  # fmt: skip
            elif request.get("op") == "list":
                channel.send(theirs, {"names": ["a", "b"]})
            else:
                channel.send(theirs, {"ok": False})

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    yield ours, asked
    ours.close()
    thread.join(5)
    theirs.close()


def test_a_job_reads_what_the_enclave_hands_within_its_limits(
    tmp_path: Path, policy: Policy, enclave_side: tuple[socket.socket, list[dict[str, object]]]
) -> None:
    sock, asked = enclave_side
    start = {
        "spec": {"kind": "packages", "repo": "core"},
        "names": {"packages": ["pre", "big", "gone"]},
        "files": [["packages", "pre"]],
    }
    job = ChannelJob(sock, start, [_fd(tmp_path / "pre", b"p" * 10)], policy)
    assert job.read("packages", "pre", 10) == b"p" * 10 and not asked, "handed with the job"
    with pytest.raises(LimitExceededError, match="packages/big is larger than 99 bytes"):
        job.read("packages", "big", 99)
    assert job.open("packages", "never-listed") is None
    assert all(r.get("name") != "never-listed" for r in asked), "not even asked for"
    assert job.read("packages", "gone", 10) is None
    assert job.names("packages") == ["pre", "big", "gone"]
    assert job.names("evidence") == ["a", "b"]
    assert job.state(["x"]) == SigningState()
    with pytest.raises(ReposealError, match="no signing state"):
        job.state(["y"])


@pytest.mark.parametrize(
    ("start", "message"),
    [
        ({"spec": {"kind": "packages", "repo": "core"}, "files": [["packages", "x"]]},
         "malformed job"),  # a file named, none handed
        ({"spec": {"kind": "db", "repo": "core"}}, "not 'db'"),
        ({"spec": {"kind": "transition", "repo": "core", "add": "x"}}, "not a list of names"),
        ({"spec": {"kind": "transition", "repo": "core", "parent": 1}}, "not a sha256"),
        ({"spec": {"kind": "packages", "repo": "core", "extra": 1}}, "unknown fields"),
        ({}, "not an object"),
    ],
)  # fmt: skip
def test_a_malformed_start_is_refused(
    policy: Policy, start: dict[str, object], message: str
) -> None:
    a, b = socket.socketpair()
    with a, b, pytest.raises(ReposealError, match=message):
        ChannelJob(a, start, [], policy)


def _report(job_fd: int, policy: Policy | str, timeout: int) -> None:
    """A child that tells who it is and what policy it was given, then exits."""
    with socket.socket(fileno=job_fd) as sock:
        told = policy if isinstance(policy, str) else f"verified v{policy.version}"
        channel.send(sock, {"pid": os.getpid(), "policy": told, "timeout": timeout})
    os._exit(0)


def test_the_template_runs_each_job_in_a_fresh_child(tmp_path: Path, world: World) -> None:
    doc = tmp_path / "policy.json"
    write_signed(doc, world.policy(version=3).to_bytes(), world.admins[:2])
    forged = tmp_path / "forged.json"
    write_signed(forged, world.policy(version=4).to_bytes(), [world.outsider])
    ctl, template_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    pid = os.fork()
    if pid == 0:  # the template, unsandboxed here
        try:
            ctl.close()
            serve(template_end, sandboxed=False, child=_report, warm=False)
        finally:
            os._exit(0)
    template_end.close()
    try:
        assert channel.receive(ctl, 1 << 20)[0] == {"op": "ready"}

        def job(document: Path, timeout: int) -> dict[str, object]:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            fds = [theirs.fileno(), os.open(document, os.O_RDONLY),
                   os.open(f"{document}.sig", os.O_RDONLY)]  # fmt: skip
            channel.send(ctl, {"timeout": timeout}, fds)
            for fd in fds[1:]:
                os.close(fd)
            theirs.close()
            with ours:
                told, _ = channel.receive(ours, 1 << 20)
            assert channel.receive(ctl, 1 << 20)[0] == {"op": "done", "status": 0}
            return dict(told)

        first, second = job(doc, 7), job(doc, 9)
        assert first["policy"] == second["policy"] == "verified v3"
        assert (first["timeout"], second["timeout"]) == (7, 9)
        assert first["pid"] != second["pid"] != pid, "one fresh child a job"
        refused = job(forged, 5)
        assert str(refused["policy"]).startswith("the enclave's policy does not verify")
        channel.send(ctl, {"timeout": 5}, [])  # a request without its descriptors
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status), "the template stops"
    finally:
        ctl.close()
        try:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
