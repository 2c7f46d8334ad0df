"""Run jobs' workers in bubblewrap: the enclave loop's side of the sandbox.

The sandbox has no network, no other processes, a read-only system, no writable filesystem,
no capabilities, and resource limits; a worker that overruns its time is killed with the
whole sandbox. Inside, a template process (``zygote``) forks one fresh worker per job. The
loop hands each worker its job's bytes as read-only descriptors and serves the package and
evidence files it asks for by plain name, so the worker can reach nothing else. Where
bubblewrap cannot run, callers must opt out explicitly (``--insecure-no-sandbox``).
"""

from __future__ import annotations

import os
import resource
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import IO, NoReturn

import reposeal
from reposeal.alpm.limits import (
    DEFAULT_LIMITS,
    MAX_BLOBS,
    MAX_FDS,
    MAX_NAMES,
    MAX_REQUEST,
    MAX_WORKER_RESULT,
)
from reposeal.enclave import channel
from reposeal.enclave.decision import Decision, MalformedDecisionError
from reposeal.enclave.readback import ALPM_DIR
from reposeal.enclave.readback import NAMES as READBACK_NAMES
from reposeal.enclave.workspec import WorkSpec
from reposeal.errors import ReposealError, ToolMissingError

DEFAULT_TIMEOUT = 120.0
START_TIMEOUT = 30.0
REAP_TIMEOUT = 10.0
STDERR_LIMIT = 1 << 20
StateFor = Callable[[list[str], list[str], list[str]], bytes]  # names, bases, file sha256s
FOLDERS = ("job", "packages", "evidence")


@dataclass(frozen=True)
class WorkerResult:
    decision: Decision  # decision, reasons, evidence used, hashes, ...
    blobs: dict[str, bytes]  # the exact bytes to store: records, databases, index


class SandboxError(ReposealError):
    """The worker could not be run or did not finish (timeout, crash, limits)."""


def _limits() -> None:  # runs in the sandbox's first process before exec
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    # its stderr file; the hard limit lets the read-back hand libalpm a whole database
    resource.setrlimit(resource.RLIMIT_FSIZE, (STDERR_LIMIT, DEFAULT_LIMITS.max_db_bytes))
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))


def _python_paths() -> list[str]:
    """What the worker's interpreter needs to see: the venv, its base Python, our code."""
    code = Path(reposeal.__file__).resolve().parents[1]
    paths = {sys.prefix, sys.base_prefix, str(code), os.path.realpath(sys.executable)}
    return sorted(p for p in paths if not p.startswith(("/usr", "/lib", "/bin")))


def bwrap_command(visible: Sequence[Path] = ()) -> list[str]:
    """bubblewrap with nothing writable and nothing of the host but the system and Python."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise ToolMissingError("bubblewrap (bwrap) is not installed (Debian: bubblewrap)")
    cmd = [
        bwrap,
        "--unshare-all",
        "--die-with-parent",
        "--new-session",
        "--clearenv",
        "--cap-drop",
        "ALL",
    ]
    for system in ("/usr", "/lib", "/lib64", "/bin", "/sbin"):
        if Path(system).exists():
            cmd += ["--ro-bind", system, system]
    cmd += ["--proc", "/proc", "--dev", "/dev"]
    for p in [*_python_paths(), *map(str, visible)]:  # they may live anywhere, /tmp too
        cmd += ["--ro-bind", p, p]
    # libalpm opens databases by path: fixed links to the worker's descriptors (readback)
    # (and an empty local database: libalpm wants one, and could not create it read-only)
    cmd += ["--dir", str(ALPM_DIR / "sync")]
    cmd += ["--symlink", str(Path(__file__).parent / "alpm-local"), str(ALPM_DIR / "local")]
    for fd, name in READBACK_NAMES.items():
        cmd += ["--symlink", f"/proc/self/fd/{fd}", str(ALPM_DIR / "sync" / f"{name}.db")]
    library = _libarchive()
    if library is not None:  # libarchive-c looks for it with ldconfig, which needs /etc
        cmd += ["--setenv", "LIBARCHIVE", library]
    # bwrap builds / and /dev on tmpfs: make them read-only too, so nothing is writable
    cmd += [
        "--remount-ro",
        "/dev",
        "--remount-ro",
        "/",
        "--setenv",
        "PYTHONDONTWRITEBYTECODE",
        "1",
        "--chdir",
        "/",
    ]
    return cmd


@cache
def _libarchive() -> str | None:
    """The path of the system's libarchive, the one pacman uses."""
    for folder in ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib"):
        found = sorted(Path(folder).glob("libarchive.so.*"))
        if found:
            return str(found[0])
    return None


@cache
def sandbox_works() -> bool:
    """Can bubblewrap run here (installed, user namespaces allowed)? Asked once a process."""
    try:
        probe = [*bwrap_command(), "/bin/true"]
        return subprocess.run(probe, capture_output=True, timeout=10).returncode == 0
    except (ReposealError, OSError, subprocess.TimeoutExpired):
        return False


def _memfd(name: str, data: bytes) -> int:
    """``data`` in an anonymous in-memory file, positioned at its start."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    view, done = memoryview(data), 0
    while done < len(data):
        done += os.write(fd, view[done:])
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _open_plain(folder: Path, name: str) -> int | None:
    """A read-only descriptor for folder/name if name is a plain file name and the file is a
    regular file; None otherwise. The worker names files; it never gets a path."""
    if not name or name in (".", "..") or "/" in name or "\0" in name or len(name) > 255:
        return None
    try:
        fd = os.open(folder / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return fd


def _reply_with(sock: socket.socket, fd: int | None) -> None:
    """Answer a worker's request with a descriptor (which we then close), or with no."""
    if fd is None:
        channel.send(sock, {"ok": False})
        return
    try:
        channel.send(sock, {"ok": True}, [fd])
    finally:
        os.close(fd)


def _listing(folder: Path | None) -> list[str]:
    """The file names in ``folder`` (none if it is missing), sorted, bounded."""
    try:
        return sorted(os.listdir(folder))[:MAX_NAMES] if folder is not None else []
    except OSError:
        return []


class WorkerPool:
    """The sandbox, started once and kept warm; one fresh forked worker per job.

    Use as a context manager, or call ``close``. A worker that breaks the protocol, runs
    over its time or crashes takes the whole sandbox down with it; the next job starts a
    new one."""

    def __init__(
        self,
        *,
        insecure_no_sandbox: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
        entry: Sequence[str] = ("-m", "reposeal.enclave.zygote"),
        visible: Sequence[Path] = (),
        one_shot: bool = False,
    ) -> None:
        """``entry``: how Python starts the template; ``visible``: more read-only folders in
        the sandbox (both for tests that play a compromised worker); ``one_shot``: for one
        job only (the template skips warming up)."""
        self.insecure, self.timeout, self.one_shot = insecure_no_sandbox, timeout, one_shot
        self.entry, self.visible = tuple(entry), tuple(visible)
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._ctl: socket.socket | None = None
        self._pending = False  # a job was handed over; its "done" is not read yet

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._pending = False
        if self._ctl is not None:
            self._ctl.close()
            self._ctl = None
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def start(self) -> None:
        """Start the sandbox now (else the first job does): fail early, pay once. A
        started sandbox stays."""
        self._start()

    def _start(self) -> socket.socket:
        if self._ctl is not None and self._proc is not None and self._proc.poll() is None:
            return self._ctl
        self.close()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        fd = theirs.fileno()
        zygote = [sys.executable, "-I", *self.entry, str(fd)]
        if self.one_shot:
            zygote.append("--one-shot")
        if self.insecure:
            cmd = [*zygote, "--no-sandbox"]
        else:
            cmd = [*bwrap_command(self.visible), *zygote]
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115  (lives as long as the sandbox)
        try:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=self._stderr,
                pass_fds=(fd,),
                preexec_fn=_limits,
            )
        finally:
            theirs.close()
        self._ctl = ours
        try:
            ours.settimeout(START_TIMEOUT)
            ready, _ = channel.receive(ours, 1 << 10)
        except (OSError, channel.ChannelError):
            ready = None
        if ready != {"op": "ready"}:
            self._fail("the sandboxed worker did not start")
        return ours

    def _fail(self, what: str) -> NoReturn:
        """Stop the sandbox and raise, with the last lines the worker wrote to stderr."""
        tail = ""
        if self._stderr is not None:
            self._stderr.seek(0)
            lines = self._stderr.read()[-4096:].decode("utf-8", "replace").strip().splitlines()
            tail = " | ".join(lines[-3:])
        self.close()
        raise SandboxError(f"{what}: {tail}" if tail else what)

    def run(
        self,
        spec: WorkSpec,
        blobs: dict[str, bytes],
        folders: dict[str, Path],
        policy: tuple[bytes, bytes],
        state_for: StateFor,
        meanwhile: Callable[[], object] | None = None,
    ) -> WorkerResult:
        """Run one job: ``blobs`` are the job's own files (new.db, ...), ``folders`` the
        packages and evidence the worker may ask for by name, ``policy`` the enclave's
        (document, signatures), ``state_for(names)`` the signing state about those names.
        ``meanwhile`` runs once the worker has its job (the enclave's own work overlaps)."""
        ctl = self._reaped()
        deadline = time.monotonic() + self.timeout
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            fds = [theirs.fileno(), _memfd("policy", policy[0]), _memfd("policy.sig", policy[1])]
            try:
                channel.send(ctl, {"op": "job", "timeout": int(self.timeout) + 1}, fds)
            finally:
                for fd in fds[1:]:
                    os.close(fd)
                theirs.close()
            self._pending = True
            self._hand_over(ours, spec, blobs, folders)
            if meanwhile is not None:
                meanwhile()
            return self._serve(ours, blobs, folders, deadline, state_for)
        except (OSError, channel.ChannelError) as exc:
            if time.monotonic() >= deadline or isinstance(exc, TimeoutError):
                self._fail(f"the worker did not finish within {self.timeout:.0f} s and was killed")
            self._fail(f"the worker failed ({exc})")
        finally:
            ours.close()

    def _hand_over(
        self,
        sock: socket.socket,
        spec: WorkSpec,
        blobs: dict[str, bytes],
        folders: dict[str, Path],
    ) -> None:
        """The job's start: its spec and, for a small job, every file it will read (one
        message instead of a round trip per file). Large jobs ask for files by name."""
        small = ["evidence", "packages"] if spec.kind == "packages" else ["evidence"]
        names = {f: _listing(folders.get(f)) for f in small}
        wanted = [("job", n) for n in blobs] + [(f, n) for f in small for n in names[f]]
        opened: list[tuple[str, str, int]] = []
        try:
            if len(wanted) <= MAX_FDS:
                for folder, name in wanted:
                    fd = self._open(folder, name, blobs, folders)
                    if fd is not None:
                        opened.append((folder, name, fd))
            files = [[folder, name] for folder, name, _ in opened]
            doc = {"spec": spec.to_json(), "names": names, "files": files}
            channel.send(sock, doc, [fd for _, _, fd in opened])
        finally:
            for _, _, fd in opened:
                os.close(fd)

    @staticmethod
    def _open(
        folder: str, name: str, blobs: dict[str, bytes], folders: dict[str, Path]
    ) -> int | None:
        if folder == "job":
            data = blobs.get(name)
            return _memfd(name, data) if data is not None else None
        return _open_plain(folders[folder], name) if folder in folders else None

    @staticmethod
    def _raw(sock: socket.socket) -> bytes:
        data, fds = channel.receive_bytes(sock, MAX_WORKER_RESULT)
        for stray in fds:
            os.close(stray)
        return data

    def _reaped(self) -> socket.socket:
        """The control channel once the last job's worker is gone and everything it left
        running was killed (the template says so after the result was already in hand, so
        the loop signs and logs meanwhile). A template that does not say so is replaced."""
        ctl = self._start()
        if self._pending:
            try:
                ctl.settimeout(REAP_TIMEOUT)
                done, _ = channel.receive(ctl, 1 << 10)
                self._pending = False
                if not isinstance(done, dict) or done.get("op") != "done":
                    raise channel.ChannelError("unexpected message")
            except (OSError, channel.ChannelError):
                self.close()
                ctl = self._start()
        return ctl

    def _serve(
        self,
        sock: socket.socket,
        blobs: dict[str, bytes],
        folders: dict[str, Path],
        deadline: float,
        state_for: StateFor,
    ) -> WorkerResult:
        """Answer the worker's requests until it sends its result."""
        while True:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            request, fds = channel.receive(sock, MAX_REQUEST)
            for stray in fds:  # a worker sends no descriptors
                os.close(stray)
            if not isinstance(request, dict):
                raise channel.ChannelError("the worker sent a malformed request")
            op, folder, name = request.get("op"), request.get("folder"), request.get("name")
            if op == "result":
                decision = request.get("decision")
                if not isinstance(decision, dict):
                    raise channel.ChannelError("the worker sent a malformed result")
                names = request.get("blobs")
                if not isinstance(names, list) or len(names) > MAX_BLOBS:
                    raise channel.ChannelError("the worker sent a malformed result")
                try:
                    typed = Decision.from_json(decision)
                except MalformedDecisionError as exc:
                    raise channel.ChannelError(exc.message) from None
                return WorkerResult(typed, {str(n): self._raw(sock) for n in names})
            lists = [request.get(k, []) for k in ("names", "bases", "shas")]
            if op == "state" and all(isinstance(x, list) and len(x) <= MAX_NAMES for x in lists):
                names, bases, shas = ([str(v) for v in x] for x in lists)
                _reply_with(sock, _memfd("state", state_for(names, bases, shas)))
            elif op == "list" and folder in FOLDERS:
                channel.send(sock, {"names": _listing(folders.get(str(folder)))})
            elif op == "open" and folder in FOLDERS and isinstance(name, str):
                _reply_with(sock, self._open(folder, name, blobs, folders))
            else:
                raise channel.ChannelError(f"the worker sent an unknown request {op!r}")
