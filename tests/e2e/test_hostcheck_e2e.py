"""Host integrity (issue 22): the real AIDE, against a scratch root with a baseline, finds a
changed and an added file; on the enclave that puts it on hold: `enclave run` signs nothing
and says how to clear it; a failed self-check does the same; `enclave clear-hold` (with a
reason, kept) lets it sign again."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.e2e.test_repo_cycle_e2e import cli, enclave_run, init_enclave
from tests.e2e.test_repo_intake_e2e import start_service, world  # noqa: F401
from tests.policy.world import World

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("aide") is None, reason="make test installs aide"),
]


def aide_conf(tmp: Path, root: Path) -> Path:
    conf = tmp / "aide.conf"
    conf.write_text(f"database_in=file:{tmp}/aide.db\ndatabase_out=file:{tmp}/aide.db.new\n"
                    f"{root} R\n")  # fmt: skip
    return conf


def test_aide_finds_a_changed_file_and_the_enclave_holds_until_cleared(
    tmp_path: Path,
    world: World,  # noqa: F811
) -> None:
    import subprocess

    root = tmp_path / "root" / "usr" / "bin"
    root.mkdir(parents=True)
    (root / "ls").write_bytes(b"the real ls")
    conf = aide_conf(tmp_path, tmp_path / "root")
    subprocess.run(["aide", "--init", "--config", str(conf)], capture_output=True, check=True)
    (tmp_path / "aide.db.new").rename(tmp_path / "aide.db")  # the baseline, at deployment

    running = start_service(tmp_path, world)
    svc = next(running)
    try:
        home = init_enclave(tmp_path, world)
        metrics = tmp_path / "hostcheck.prom"
        check = ["hostcheck", "aide", "--hold", str(home), "--metrics-file", str(metrics), "--",
                 "--check", "--config", str(conf)]  # fmt: skip
        clean = cli(*check)
        assert clean.returncode == 0 and "clean" in clean.stderr, clean.stderr
        assert not (home / "HOLD").exists()

        (root / "ls").write_bytes(b"a trojaned ls")
        (root / "sshd-backdoor").write_bytes(b"x")
        found = cli(*check)
        assert found.returncode == 5, found.stderr
        assert f"changed: {root / 'ls'}" in found.stderr and "sshd-backdoor" in found.stderr
        (count,) = [float(line.split()[-1]) for line in metrics.read_text().splitlines()
                    if line.startswith('reposeal_hostcheck_findings{')]  # fmt: skip
        assert count >= 2, "the changed ls, the new file (and the folder they are in)"
        held = cli(*enclave_run(svc, home), "--once", "--wait", "0")
        assert held.returncode == 5 and "on hold" in held.stderr, held.stderr
        assert "reposeal enclave clear-hold" in held.stderr and "sshd-backdoor" in held.stderr

        nothing = cli("enclave", "clear-hold", "--home", str(home), "--reason", "")
        assert nothing.returncode != 0, "a reason is needed"
        cleared = cli("enclave", "clear-hold", "--home", str(home), "--reason",
                      "rebuilt ls from the package; backdoor removed")  # fmt: skip
        assert cleared.returncode == 0, cleared.stderr
        kept = json.loads((home / "HOLD.cleared").read_text().splitlines()[-1])
        assert kept["reason"].startswith("rebuilt ls") and kept["hold"]["findings"]
        served = cli(*enclave_run(svc, home), "--once", "--wait", "0")
        assert served.returncode == 0 and "served 0 job" in served.stdout, served.stderr

        # a self-check that fails holds the enclave too (here: a manifest no admin signed)
        manifest = tmp_path / "manifest.json"
        made = cli("enclave", "manifest", "-o", str(manifest))
        assert made.returncode == 0, made.stderr
        manifest.with_name("manifest.json.sig").write_bytes(b"")
        failed = cli("enclave", "selfcheck", "--home", str(home), "--manifest", str(manifest))
        assert failed.returncode == 5 and "on hold" in failed.stderr, failed.stderr
        again = cli(*enclave_run(svc, home), "--once", "--wait", "0")
        assert again.returncode == 5 and "selfcheck" in again.stderr, again.stderr
    finally:
        running.close()
