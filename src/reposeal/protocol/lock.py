"""One writer per database, also against repo-add.

repo-add creates ``NAME.db.tar.gz.lck`` exclusively and writes its PID in it. We create the
same file and also hold an ``flock`` on it, so that a writer killed with -9 never blocks the
next one: a lock file whose flock is free and whose PID is dead is stale and taken over.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from reposeal.errors import LockedError


def _pid_alive(pid: int) -> bool:
    """True if ``pid`` runs (a zombie, dead but not yet reaped, does not count)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2] != "Z"
    except (OSError, ValueError, IndexError):
        return True


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None


def _try_lock(path: Path) -> int | None:
    """Return a locked fd, or None if another live writer holds the lock."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                os.close(fd)
                return None
            raise
        # the file may have been removed by the previous holder after we opened it
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            return _try_lock(path)
        pid = _read_pid(fd)
        if pid is not None and pid != os.getpid() and _pid_alive(pid):
            # a live process (repo-add does not flock) owns it
            os.close(fd)
            return None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return fd
    except BaseException:
        with contextlib.suppress(OSError):
            os.close(fd)
        raise


@contextlib.contextmanager
def database_lock(path: Path, *, wait: float = 0.0) -> Iterator[None]:
    """Hold the database lock; wait up to ``wait`` seconds for another writer to finish."""
    deadline = time.monotonic() + wait
    while True:
        fd = _try_lock(path)
        if fd is not None:
            break
        if time.monotonic() >= deadline:
            holder = ""
            with contextlib.suppress(OSError):
                holder = path.read_text().strip()
            raise LockedError(
                f"another writer holds the lock{f' (process {holder})' if holder else ''}; "
                "retry later or pass --wait SECONDS",
                path=path,
            )
        time.sleep(0.05)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)
