"""The template process inside the sandbox: one fresh, forked worker per job.

Starting Python and importing the parsers costs about 0.1 s, far more than checking a small
package. So the enclave starts this template once, inside bubblewrap (no network, no
writable filesystem at all, no capabilities, own PID namespace), with everything imported
and before it has seen a byte of any job. For each job a child, forked ahead of time, runs
that one job and exits. The template never reads job data itself, so nothing one job does
can leak into the next: after each job every other process in the sandbox is killed
(``kill(-1)`` reaches exactly the sandbox's PID namespace) before the next child is forked,
and the template is not ptrace-able (PR_SET_DUMPABLE 0) by its children.

The child sees only descriptors: the job's channel to the enclave loop, over which it asks
for files by name (read-only descriptors come back, never paths), and answers.

Run as: python -I -m reposeal.enclave.zygote FD [--no-sandbox] [--one-shot]
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import hashlib
import io
import os
import resource
import signal
import socket
import sys
import traceback
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from reposeal.alpm.limits import DEFAULT_LIMITS, MAX_REPLY, MAX_START
from reposeal.alpm.package import read_package
from reposeal.enclave import channel
from reposeal.enclave.decision import Decision
from reposeal.enclave.readback import warm_read_back
from reposeal.enclave.records import state_from_json
from reposeal.enclave.transition import WorkerOutput
from reposeal.enclave.worker import decide_job
from reposeal.enclave.workspec import WorkSpec
from reposeal.errors import LimitExceededError, ReposealError
from reposeal.policy.document import Policy, verify_policy
from reposeal.policy.state import SigningState, restrict

Child = Callable[[int, "Policy | str", int], None]
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
MEMORY_LIMIT = 8 << 30  # address space; Rust and OpenSSL reserve more than they use
FILE_LIMIT = DEFAULT_LIMITS.max_db_bytes  # the largest file a worker may write
POLICY_LIMIT = 4 << 20


def _prctl(option: int, value: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl failed")


def _read_fd(fd: int, limit: int) -> bytes:
    with os.fdopen(fd, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ReposealError(f"a file of more than {limit} bytes")
    return data


class ChannelJob:
    """A :class:`reposeal.enclave.worker.JobInput` served by the enclave over the channel."""

    def __init__(
        self, sock: socket.socket, start: dict[str, Any], fds: list[int], policy: Policy
    ) -> None:
        self.sock, self.policy = sock, policy
        self.spec = WorkSpec.from_json(start.get("spec"))
        self.listed = {str(k): [str(n) for n in v] for k, v in start.get("names", {}).items()}
        files = start.get("files", [])
        if len(files) != len(fds):
            raise ReposealError("the enclave sent a malformed job")
        self.preopened = {(str(f), str(n)): fd for (f, n), fd in zip(files, fds, strict=True)}

    def _ask(self, doc: dict[str, Any]) -> tuple[Any, list[int]]:
        channel.send(self.sock, doc)
        return channel.receive(self.sock, 64 << 20)

    def open(self, folder: str, name: str) -> BinaryIO | None:
        fd = self.preopened.pop((folder, name), None)
        if fd is not None:
            return os.fdopen(fd, "rb")
        if folder in self.listed and name not in self.listed[folder]:
            return None
        reply, fds = self._ask({"op": "open", "folder": folder, "name": name})
        if not reply.get("ok") or len(fds) != 1:
            for fd in fds:
                os.close(fd)
            return None
        return os.fdopen(fds[0], "rb")

    def read(self, folder: str, name: str, limit: int) -> bytes | None:
        f = self.open(folder, name)
        if f is None:
            return None
        with f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise LimitExceededError(f"{folder}/{name} is larger than {limit} bytes")
        return data

    def state(
        self, names: Collection[str], bases: Collection[str] = (), shas: Collection[str] = ()
    ) -> SigningState:
        request = {"op": "state", "names": sorted(names), "bases": sorted(bases)}
        channel.send(self.sock, request | {"shas": sorted(shas)})
        reply, fds = channel.receive(self.sock, MAX_REPLY)
        if not reply.get("ok") or len(fds) != 1:
            for fd in fds:
                os.close(fd)
            raise ReposealError("the enclave sent no signing state")
        with os.fdopen(fds[0], "rb") as f:
            return state_from_json(f.read())

    def names(self, folder: str) -> list[str]:
        if folder in self.listed:
            return self.listed[folder]
        reply, _ = self._ask({"op": "list", "folder": folder})
        return [str(n) for n in reply.get("names", [])]


@dataclass
class MemoryJob:
    """A :class:`reposeal.enclave.worker.JobInput` held in memory (folder, name) -> bytes."""

    spec: WorkSpec
    policy: Policy
    files: dict[tuple[str, str], bytes]
    signed: SigningState = field(default_factory=SigningState)

    def state(
        self, names: Collection[str], bases: Collection[str] = (), shas: Collection[str] = ()
    ) -> SigningState:
        return restrict(self.signed, names, bases, shas)

    def read(self, folder: str, name: str, limit: int) -> bytes | None:
        return self.files.get((folder, name))

    def open(self, folder: str, name: str) -> BinaryIO | None:
        data = self.files.get((folder, name))
        return io.BytesIO(data) if data is not None else None

    def names(self, folder: str) -> list[str]:
        return sorted(n for f, n in self.files if f == folder)


WARM_UP = Path(__file__).parent / "fixtures" / "warm-up-1-1-x86_64.pkg.tar.zst"


def _warm_up(policy: Policy) -> None:
    """Run a package job on a fixture kept beside this module and a read-back once, so
    lazy imports (libarchive, libalpm) and caches are filled before the first fork and not
    paid again by every job's worker."""
    pkg = WARM_UP.read_bytes()
    name = WARM_UP.name
    files = {("packages", name): pkg}
    decide_job(MemoryJob(WorkSpec("packages", "warm-up"), policy, files))
    read_package(Path(name), opened=io.BytesIO(pkg))
    warm_read_back()


def _child(job_fd: int, policy: Policy | str, timeout: int) -> None:
    """Run one job and report; never returns into the template's loop."""
    status = 1
    try:
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
        resource.setrlimit(resource.RLIMIT_CPU, (timeout, timeout))
        # its files: stderr (1 MiB), and the memfds the read-back hands libalpm, which may
        # go up to the hard limit for that (a repository's first databases, adopted)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, FILE_LIMIT))
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
        sock = socket.socket(fileno=job_fd)
        start, fds = channel.receive(sock, MAX_START)
        if isinstance(policy, str):
            output = WorkerOutput(Decision.refusal(policy), {})
        else:
            try:
                job = ChannelJob(sock, start, fds, policy)
            except ReposealError as exc:
                output = WorkerOutput(Decision.refusal(f"malformed job: {exc}"), {})
            else:
                output = decide_job(job)
        # records and databases travel as the exact bytes to be stored (and hashed)
        names = sorted(output.blobs)
        answer = {"op": "result", "decision": output.decision.to_json(), "blobs": names}
        channel.send(sock, answer)
        for name in names:
            channel.send_bytes(sock, output.blobs[name])
        status = 0
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(status)


def _alone(timeout: float = 5.0) -> bool:
    """Wait until no process but the sandbox's init and this one is left (the killed are
    gone once init has reaped them); False if that does not happen in ``timeout``."""
    import time

    deadline = time.monotonic() + timeout
    me = os.getpid()
    while True:
        others = [p for p in os.listdir("/proc") if p.isdigit() and int(p) not in (1, me)]
        if not others:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)


class _Spare:
    """A child forked ahead of its job (after the last job's processes were killed), so
    forking is off the job's path. It waits for (policy key, timeout, job channel)."""

    def __init__(
        self, ctl: socket.socket, policies: dict[str, Policy | str], run_child: Child
    ) -> None:
        self.keys = frozenset(policies)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.pid = os.fork()
        if self.pid == 0:
            status = 1
            try:
                gc.disable()  # short-lived: collection would only copy shared pages
                ctl.close()
                ours.close()
                _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
                request, fds = channel.receive(theirs, MAX_REPLY)
                theirs.close()
                if len(fds) == 1:
                    timeout = int(request.get("timeout", 120))
                    run_child(fds[0], policies[str(request["key"])], timeout)
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(status)
        theirs.close()
        self.sock = ours

    def hand(self, key: str, timeout: int, job_fd: int) -> None:
        try:
            channel.send(self.sock, {"key": key, "timeout": timeout}, [job_fd])
        finally:
            self.sock.close()

    def discard(self) -> None:
        self.sock.close()
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)


def serve(
    ctl: socket.socket, sandboxed: bool, child: Child | None = None, warm: bool = True
) -> None:
    """Run one fresh child per job request until the enclave closes the control channel.
    ``child(job_fd, policy, timeout)`` runs the job and must not return (tests pass one
    that behaves as a compromised worker would)."""
    run_child = child or _child
    policies: dict[str, Policy | str] = {}  # sha256 -> verified policy or why it is not
    spare: _Spare | None = None
    channel.send(ctl, {"op": "ready"})
    try:
        while True:
            try:
                request, fds = channel.receive(ctl, MAX_REPLY)
            except (channel.ChannelError, OSError):
                return  # the enclave went away
            if len(fds) != 3:
                for fd in fds:
                    os.close(fd)
                return
            job_fd, policy_fd, sig_fd = fds
            raw, sigs = _read_fd(policy_fd, POLICY_LIMIT), _read_fd(sig_fd, POLICY_LIMIT)
            key = hashlib.sha256(hashlib.sha256(raw).digest() + sigs).hexdigest()
            if key not in policies:
                try:
                    policies[key] = verify_policy(raw, sigs)
                    if warm:
                        _warm_up(policies[key])  # type: ignore[arg-type]
                except ReposealError as exc:
                    policies[key] = f"the enclave's policy does not verify: {exc}"
                gc.freeze()  # what exists now is shared with every child, never collected
            if spare is not None and key not in spare.keys:
                spare.discard()  # forked before this policy was known
                spare = None
            worker = spare or _Spare(ctl, policies, run_child)
            spare = None
            worker.hand(key, int(request.get("timeout", 120)), job_fd)
            os.close(job_fd)
            _, status = os.waitpid(worker.pid, 0)
            if sandboxed:  # whatever the child left running dies with it
                with contextlib.suppress(ProcessLookupError):  # nothing was left
                    os.kill(-1, signal.SIGKILL)
                if not _alone():
                    return  # something outlived SIGKILL: the enclave starts a new sandbox
            spare = _Spare(ctl, policies, run_child)  # fresh, for the next job
            channel.send(ctl, {"op": "done", "status": status})
    finally:
        if spare is not None:
            spare.discard()


def main(child: Child | None = None) -> None:
    fd = int(sys.argv[1])
    sandboxed = "--no-sandbox" not in sys.argv[2:]
    if sandboxed and os.getpid() > 2:  # kill(-1) must only ever reach our own namespace
        sys.exit("reposeal zygote: not in a PID namespace of its own; refusing to run")
    _prctl(PR_SET_DUMPABLE, 0)  # children (same uid) cannot ptrace or read our memory
    warm = "--one-shot" not in sys.argv[2:]  # a warm-up pays off only over many jobs
    serve(socket.socket(fileno=fd), sandboxed, child, warm)


if __name__ == "__main__":
    main()
