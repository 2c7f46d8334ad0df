"""The database lock: exclusive, compatible with repo-add's lock file, never stuck."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reposeal.errors import LockedError
from reposeal.protocol.lock import database_lock

HOLD = (
    "import sys, time; from pathlib import Path; from reposeal.protocol.lock import database_lock\n"
    "with database_lock(Path(sys.argv[1])):\n"
    "    print('locked', flush=True); time.sleep(60)\n"
)


def hold_in_child(lock: Path) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(lock)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "locked"
    return child


def test_second_writer_is_refused_then_waits(tmp_path: Path) -> None:
    lock = tmp_path / "r.db.tar.gz.lck"
    child = hold_in_child(lock)
    try:
        with pytest.raises(LockedError, match=f"process {child.pid}"), database_lock(lock):
            pass
        start = time.monotonic()
        killer = subprocess.Popen(["sh", "-c", f"sleep 0.3; kill {child.pid}"])
        with database_lock(lock, wait=10):
            assert time.monotonic() - start >= 0.25
        killer.wait()
    finally:
        child.kill()
        child.wait()


def test_kill_9_leaves_no_stuck_lock(tmp_path: Path) -> None:
    lock = tmp_path / "r.db.tar.gz.lck"
    child = hold_in_child(lock)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert lock.exists()  # the file stays behind, as with repo-add ...
    with database_lock(lock):  # ... but it is stale and taken over
        assert lock.read_text().strip() == str(os.getpid())
    assert not lock.exists()


def test_repo_add_style_lock_of_a_live_process_is_respected(tmp_path: Path) -> None:
    lock = tmp_path / "r.db.tar.gz.lck"
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        lock.write_text(f"{sleeper.pid}\n")  # what repo-add writes (no flock)
        with pytest.raises(LockedError), database_lock(lock):
            pass
    finally:
        sleeper.kill()
        sleeper.wait()
    with database_lock(lock):  # dead now: stale
        pass


def test_package_readers_die_with_the_command_that_started_them(tmp_path: Path) -> None:
    """kill -9 of `db add` must not leave its package-reading workers behind."""
    import os
    import signal
    import subprocess
    import sys
    import time

    script = f"""
import time
from concurrent.futures import ProcessPoolExecutor
from reposeal.repo.dbupdate import _die_with_parent
with ProcessPoolExecutor(max_workers=1, initializer=_die_with_parent) as pool:
    pid = pool.submit(__import__("os").getpid).result()
    open({str(tmp_path / "worker")!r}, "w").write(str(pid))
    pool.submit(time.sleep, 3600)
    time.sleep(3600)
"""
    parent = subprocess.Popen([sys.executable, "-c", script])
    for _ in range(300):
        if (tmp_path / "worker").exists() and (tmp_path / "worker").read_text():
            break
        time.sleep(0.05)
    worker = int((tmp_path / "worker").read_text())
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    for _ in range(200):  # the kernel kills it at once; reaping may take a moment
        try:
            os.kill(worker, 0)
            with open(f"/proc/{worker}/stat") as f:
                if f.read().split()[2] == "Z":
                    break
        except (ProcessLookupError, FileNotFoundError):
            break
        time.sleep(0.05)
    else:
        raise AssertionError(f"worker {worker} outlived its parent")
