"""The worker sandbox, tried from the inside: a worker that behaves as a compromised one
would (parser exploited) runs in the real bubblewrap sandbox through the real template, and
must not be able to reach the host, the template or the next job."""

from __future__ import annotations

import json
import os
import socket
import textwrap
from pathlib import Path

import pytest

from reposeal.alpm.limits import MAX_FDS
from reposeal.enclave import channel
from reposeal.enclave.sandbox import SandboxError, WorkerPool, sandbox_works
from reposeal.enclave.workspec import WorkSpec

pytestmark = pytest.mark.skipif(not sandbox_works(), reason="bubblewrap cannot run here")

# The "compromised worker": each job's spec says what to try; it reports what happened.
EVIL = textwrap.dedent(
    """
    import ctypes, json, os, socket, subprocess, time
    from reposeal.enclave import channel, zygote

    def attempt(fn):
        try:
            return "ok: " + str(fn())
        except BaseException as exc:
            return "refused: " + type(exc).__name__

    def write(path):
        with open(path, "w") as f:
            f.write("x")

    def others():
        me, parent = os.getpid(), os.getppid()
        return sorted(int(p) for p in os.listdir("/proc") if p.isdigit()
                      and int(p) not in (1, me, parent))

    def ptrace_parent():
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.ptrace(16, os.getppid(), 0, 0) != 0:  # PTRACE_ATTACH
            raise PermissionError(ctypes.get_errno())
        return "attached"

    def peek_parent():
        with open(f"/proc/{os.getppid()}/mem", "rb") as f:
            return f.read(1)

    def connect():
        socket.create_connection(("127.0.0.1", int(os.environ.get("PORT", "1"))), timeout=1)

    def ask(sock, folder, name):
        channel.send(sock, {"op": "open", "folder": folder, "name": name})
        reply, fds = channel.receive(sock, 1 << 20)
        for fd in fds:
            os.close(fd)
        return reply.get("ok")

    def child(job_fd, policy, timeout):
        sock = socket.socket(fileno=job_fd)
        start, fds = channel.receive(sock, 1 << 20)
        do = start["spec"]["repo"]  # what to try, carried in a field the spec has
        report = {"pid": os.getpid()}
        if do == "leave-a-process":
            if os.fork() == 0:
                time.sleep(3600)
                os._exit(0)
        elif do == "look":
            report["others"] = others()
            for path in ("/x", "/tmp/x", "/dev/shm/x", "/usr/x", "/proc/1/root/x", "/dev/x",
                     "/alpm/x", "/alpm/sync/x", "/alpm/local/x"):
                report["write " + path] = attempt(lambda: write(path))
            report["ptrace"] = attempt(ptrace_parent)
            report["peek"] = attempt(peek_parent)
            report["connect"] = attempt(connect)
            report["host file"] = attempt(lambda: open("/etc/passwd").read(1))
            report["ask ../"] = ask(sock, "packages", "../secret")
            report["ask /"] = ask(sock, "packages", "/etc/passwd")
            report["ask link"] = ask(sock, "packages", "link")
            report["ask plain"] = ask(sock, "packages", "plain")
        elif do == "hang":
            time.sleep(3600)
        elif do == "crash":
            os._exit(3)
        elif do == "garbage":
            sock.sendall(b"\\xff\\xff\\xff\\xff" + b"x" * 100)
            os._exit(0)
        # what it saw, as a refusal's reason: a decision carries no other fields
        decision = {"decision": "refuse", "reasons": [json.dumps(report)]}
        channel.send(sock, {"op": "result", "decision": decision, "blobs": []})
        os._exit(0)

    zygote.main(child)
    """
)


@pytest.fixture
def evil_pool(tmp_path: Path) -> WorkerPool:
    code = tmp_path / "code"
    code.mkdir()
    (code / "evil.py").write_text(EVIL)
    entry = ["-c", f"import sys; sys.path.insert(0, {str(code)!r}); import evil"]
    return WorkerPool(entry=entry, visible=[code], timeout=5)


def _job(pool: WorkerPool, do: str, folder: Path) -> dict[str, object]:
    policy = (b"{}", b"")  # the template refuses it; the evil child does not care
    decision = pool.run(
        WorkSpec("transition", do), {}, {"packages": folder}, policy, lambda *_: b"{}"
    ).decision
    seen: dict[str, object] = json.loads(decision.reasons[0])
    return seen


def test_a_compromised_worker_reaches_nothing(evil_pool: WorkerPool, tmp_path: Path) -> None:
    folder = tmp_path / "packages"
    folder.mkdir()
    (folder / "plain").write_bytes(b"package")
    (tmp_path / "secret").write_bytes(b"secret")
    (folder / "link").symlink_to(tmp_path / "secret")
    listener = socket.create_server(("127.0.0.1", 0))
    os.environ["PORT"] = str(listener.getsockname()[1])  # --clearenv drops it anyway
    try:
        with evil_pool as pool:
            first = _job(pool, "leave-a-process", folder)
            seen = _job(pool, "look", folder)
    finally:
        listener.close()
        del os.environ["PORT"]
    assert seen["pid"] != first["pid"], "each job runs in a fresh process"
    assert seen["others"] == [], "what a job left running was killed before the next one"
    for key, value in seen.items():
        if key.startswith("write "):
            assert str(value).startswith("refused"), (key, value)
    assert str(seen["ptrace"]).startswith("refused")
    assert str(seen["peek"]).startswith("refused")
    assert str(seen["connect"]).startswith("refused")
    assert str(seen["host file"]).startswith("refused")
    assert seen["ask ../"] is False
    assert seen["ask /"] is False
    assert seen["ask link"] is False
    assert seen["ask plain"] is True


@pytest.mark.parametrize(
    ("do", "why"), [("hang", "did not finish"), ("crash", "failed"), ("garbage", "failed")]
)
def test_a_failing_worker_is_killed_and_the_next_job_runs(
    evil_pool: WorkerPool, tmp_path: Path, do: str, why: str
) -> None:
    evil_pool.timeout = 2
    with evil_pool as pool:
        with pytest.raises(SandboxError, match=why):
            _job(pool, do, tmp_path)
        assert "pid" in _job(pool, "look", tmp_path)


def test_channel_refuses_oversized_frames_and_too_many_descriptors() -> None:
    a, b = socket.socketpair()
    with a, b:
        channel.send(a, {"x": "y" * 100})
        with pytest.raises(channel.ChannelError, match="exceeds"):
            channel.receive(b, 50)
    a, b = socket.socketpair()
    with a, b:
        fds = [os.open("/dev/null", os.O_RDONLY) for _ in range(MAX_FDS + 1)]
        try:
            channel.send(a, {}, fds)
            before = len(os.listdir("/proc/self/fd"))
            with pytest.raises(channel.ChannelError, match="descriptors"):
                channel.receive(b, 1 << 10)
            assert len(os.listdir("/proc/self/fd")) <= before, "received descriptors are closed"
        finally:
            for fd in fds:
                os.close(fd)
    a, b = socket.socketpair()
    with a, b:
        a.sendall(b"\x00\x00\x00\x05nope!")
        with pytest.raises(channel.ChannelError, match="JSON"):
            channel.receive(b, 1 << 10)
        a.close()
        with pytest.raises(channel.ChannelError, match="closed"):
            channel.receive(b, 1 << 10)
