"""`reposeal enclave selfcheck` for real: it passes on an intact enclave and fails, loudly,
when an installed file changes or appears, the manifest lacks the admin threshold, the log
is edited, or the signing key is gone."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from reposeal.enclave.selfcheck import installed_root
from tests.e2e.test_repo_cycle_e2e import cli, init_enclave
from tests.e2e.test_repo_intake_e2e import world  # noqa: F401
from tests.policy.world import World

pytestmark = pytest.mark.e2e


def test_selfcheck_passes_intact_and_fails_each_difference(tmp_path: Path, world: World) -> None:  # noqa: F811
    raw = world.policy().to_bytes()
    (tmp_path / "policy.json").write_bytes(raw)
    (tmp_path / "policy.json.sig").write_bytes(b"".join(p.sign(raw) for p in world.admins[:2]))
    home = init_enclave(tmp_path, world)
    (tmp_path / "repo.key").chmod(0o600)  # as the role places it (others may not read it)
    root = tmp_path / "installed"
    shutil.copytree(installed_root(), root, ignore=shutil.ignore_patterns("__pycache__"))
    manifest = tmp_path / "manifest.json"
    assert cli("enclave", "manifest", "--root", str(root), "-o", str(manifest)).returncode == 0
    admin = [f"soft:{p.signer.path}" for p in world.admins]
    assert cli("policy", "sign", "--signer", admin[0], str(manifest)).returncode == 0
    check = ["enclave", "selfcheck", "--home", str(home), "--manifest", str(manifest),
             "--root", str(root)]  # fmt: skip

    weak = cli(*check)
    assert weak.returncode == 5 and "needs 2" in weak.stdout, weak.stdout
    assert "SELFCHECK FAILED" in weak.stderr
    assert cli("policy", "sign", "--signer", admin[1], str(manifest)).returncode == 0
    ok = cli(*check)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.count("ok    ") == 5

    (tmp_path / "repo.key").chmod(0o644)
    readable = cli(*check)
    assert readable.returncode == 5 and "readable or writable by others" in readable.stdout
    (tmp_path / "repo.key").chmod(0o600)
    _an_unsandboxed_enclave_run_fails_it(tmp_path, home, check)

    worker = root / "enclave" / "worker.py"
    original = worker.read_bytes()
    worker.write_bytes(original.replace(b"def run(", b"def run(  ", 1))
    (root / "enclave" / "backdoor.py").write_text("print('hi')\n")
    changed = cli(*check)
    assert changed.returncode == 5
    assert "changed: enclave/worker.py" in changed.stdout
    assert "not in the manifest: enclave/backdoor.py" in changed.stdout
    worker.write_bytes(original)
    (root / "enclave" / "backdoor.py").unlink()
    assert cli(*check).returncode == 0

    key = tmp_path / "repo.key"
    key.rename(tmp_path / "elsewhere.key")
    gone = cli(*check)
    assert gone.returncode == 5 and "FAILED the signing key" in gone.stdout, gone.stdout
    (tmp_path / "elsewhere.key").rename(key)

    with sqlite3.connect(home / "log.sqlite") as c:
        c.execute('UPDATE entry SET data = CAST(\'{"type":"genesis"}\' AS BLOB) WHERE idx = 0')
    edited = cli(*check)
    assert edited.returncode == 5 and "FAILED the transparency log" in edited.stdout, edited.stdout


def _an_unsandboxed_enclave_run_fails_it(tmp_path: Path, home: Path, check: list[str]) -> None:
    """An `enclave run` of this home started outside its unit (privileges, no seccomp)."""
    import subprocess
    import sys

    from tests import tools

    pki = tmp_path / "pki"
    assert cli("bridge", "pki", str(pki)).returncode == 0
    run = subprocess.Popen(
        [sys.executable, "-m", "reposeal.cli", "enclave", "run", "--home", str(home), "--bridge",
         f"https://127.0.0.1:{tools.free_port()}", "--cert", str(pki / "enclave.pem"), "--key",
         str(pki / "enclave.key"), "--ca", str(pki / "ca.pem")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(100):  # until it runs as `enclave run` (its command line is set)
            if run.poll() is None and "enclave" in Path(f"/proc/{run.pid}/cmdline").read_text():
                break
        bare = cli(*check)
        assert run.poll() is None, "still running (retrying the bridge)"
        assert bare.returncode == 5 and "may gain privileges" in bare.stdout, bare.stdout
        assert "no seccomp filter" in bare.stdout
    finally:
        run.kill()
        run.wait()
