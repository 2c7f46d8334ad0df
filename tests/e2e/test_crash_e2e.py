"""kill -9 a writer at random moments: pacman must always accept what is on disk."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reposeal.alpm.synthetic import write_package
from tests import tools
from tests.conftest import GpgKey, Pacman

pytestmark = pytest.mark.e2e


def add_cmd(key: GpgKey, db: Path, *pkgs: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "reposeal.cli",
        "db",
        "add",
        "-q",
        "--sign",
        "--key",
        key.fingerprint,
        "--gnupghome",
        str(key.home),
        str(db),
        *map(str, pkgs),
    ]


def test_kill_9_at_any_moment_leaves_a_database_pacman_accepts(
    pacman: Pacman, gpg_key: GpgKey
) -> None:
    repo = pacman.repo_dir
    db = repo / "demo.db.tar.gz"
    base = [write_package(repo, f"base{i}", "1.0-1") for i in range(1500)]
    tools.run(add_cmd(gpg_key, db, *base))
    pacman.run("-Sy")
    start = time.monotonic()
    tools.run(add_cmd(gpg_key, db, write_package(repo, "timing", "1-1")))
    duration = time.monotonic() - start
    rng = random.Random(1234)
    for i in range(12):
        pkg = write_package(repo, f"victim{i}", "1-1")
        child = subprocess.Popen(add_cmd(gpg_key, db, pkg), stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.05, duration))
        child.send_signal(signal.SIGKILL)
        child.wait()
        # what is on disk is a complete, validly signed database
        tools.run(
            [
                sys.executable,
                "-m",
                "reposeal.cli",
                "db",
                "verify",
                "-q",
                "--gnupghome",
                str(gpg_key.home),
                str(db),
            ]
        )
        pacman.run("-Sy")
    # and the next writer is not blocked by the dead one's lock
    tools.run(add_cmd(gpg_key, db, write_package(repo, "after", "1-1")))
    pacman.run("-Sy")
    assert "after" in pacman.run("-Sl", "demo").stdout
