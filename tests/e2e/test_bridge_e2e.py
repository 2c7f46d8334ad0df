"""The bridge over real mutual TLS on 127.0.0.1, and the enclave serving a job from it."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from reposeal.protocol.bridge_client import BridgeClient, BridgeError
from reposeal.tls import Issued, client_context, issue, make_ca
from tests.e2e.test_enclave_e2e import (  # noqa: F401  (fixture)
    cli,
    evidence,
    setup,
    sign_package,
)
from tests.policy.world import World

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Issued]:
    ca = make_ca(tmp_path / "pki")
    rogue = make_ca(tmp_path / "rogue", "rogue CA")
    return {
        "ca": ca,
        "bridge": issue(ca, tmp_path / "pki", "bridge", "bridge", server_ip="127.0.0.1"),
        "enclave": issue(ca, tmp_path / "pki", "enclave", "enclave"),
        "repo": issue(ca, tmp_path / "pki", "repo", "repo"),
        "rogue-ca": rogue,
        "rogue": issue(rogue, tmp_path / "rogue", "repo", "repo"),
    }


@pytest.fixture
def bridge(tmp_path: Path, pki: dict[str, Issued]) -> Iterator[str]:
    yield from _bridge(tmp_path, pki)


def _bridge(tmp_path: Path, pki: dict[str, Issued]) -> Iterator[str]:
    """Start `reposeal bridge serve` on a free port of 127.0.0.1 (with this environment)."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "reposeal.cli",
            "bridge",
            "serve",
            "--dir",
            str(tmp_path / "q"),
            "--listen",
            f"127.0.0.1:{port}",
            "--cert",
            str(pki["bridge"].cert),
            "--key",
            str(pki["bridge"].key),
            "--client-ca",
            str(pki["ca"].cert),
        ],
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    try:
        yield f"https://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def enclave_run_args(url: str, home: Path, pki: dict[str, Issued], wait: str = "1") -> list[str]:
    return [
        "enclave",
        "run",
        "--once",
        "--wait",
        wait,
        "--home",
        str(home),
        "--bridge",
        url,
        "--cert",
        str(pki["enclave"].cert),
        "--key",
        str(pki["enclave"].key),
        "--ca",
        str(pki["ca"].cert),
    ]


def upload(repo_side: BridgeClient, pkg: Path, ev: Path) -> dict[str, str]:
    """Upload a transition's files (a package and its evidence); return the job's file map."""
    files = {f"packages/{pkg.name}": repo_side.put_blob(pkg)}
    for f in sorted(ev.iterdir()):
        files[f"evidence/{f.name}"] = repo_side.put_blob(f)
    return files


def client(url: str, pki: dict[str, Issued], who: str, ca: str = "ca") -> BridgeClient:
    return BridgeClient(url, client_context(pki[who], pki[ca].cert), timeout=30)


def test_a_job_goes_through_the_bridge_to_the_enclave_and_back(
    tmp_path: Path,
    pki: dict[str, Issued],
    bridge: str,
    setup: tuple[World, Path, Path, Path],  # noqa: F811
) -> None:
    world, home, _, pkg = setup
    ev = evidence(world, tmp_path / "ev", pkg)
    assert sign_package(home, pkg, ev, "p1").returncode == 0
    repo_side = client(bridge, pki, "repo")
    files = upload(repo_side, pkg, ev)
    job = {"id": "job-42", "kind": "transition", "repo": "core", "arch": "x86_64",
           "add": [pkg.name], "files": files}  # fmt: skip
    repo_side.submit(job)
    repo_side.submit(job)  # idempotent
    served = cli(*enclave_run_args(bridge, home, pki))
    assert served.returncode == 0 and "served 1 job" in served.stdout, served.stderr
    done = repo_side.job("job-42")
    assert done["state"] == "done" and done["result"]["decision"] == "accept"
    assert done["result"]["signature"] and done["result"]["log_index"] == 2
    assert done["result"]["databases"]["chunks"]  # the enclave wrote the databases
    # a second, different result for the same job is refused
    enclave_side = client(bridge, pki, "enclave")
    with pytest.raises(BridgeError, match="409"):
        enclave_side.post_result("job-42", {"decision": "accept", "signature": "forged"})
    enclave_side.post_result("job-42", done["result"])  # the same answer again is fine


def test_a_policy_rotation_reaches_the_enclave_through_the_bridge(
    tmp_path: Path,
    pki: dict[str, Issued],
    bridge: str,
    setup: tuple[World, Path, Path, Path],  # noqa: F811
) -> None:
    world, home, _, _ = setup
    raw = world.policy(version=2, approvals=1).to_bytes()
    (tmp_path / "policy.json").write_bytes(raw)
    (tmp_path / "policy.json.sig").write_bytes(b"".join(p.sign(raw) for p in world.admins[:2]))
    repo_side = client(bridge, pki, "repo")
    files = {n: repo_side.put_blob(tmp_path / n) for n in ("policy.json", "policy.json.sig")}
    repo_side.submit({"id": "policy-2", "kind": "policy", "files": files})
    served = cli(*enclave_run_args(bridge, home, pki))
    assert served.returncode == 0, served.stderr
    assert repo_side.job("policy-2")["result"]["decision"] == "accept"
    status = json.loads(cli("enclave", "status", "--json", "--home", str(home)).stdout)
    assert status["policy_version"] == 2


def test_roles_and_certificates_are_enforced(
    tmp_path: Path, pki: dict[str, Issued], bridge: str
) -> None:
    with pytest.raises(BridgeError, match="TLS"):
        client(bridge, pki, "rogue").next_job(0)  # a certificate from another CA
    with pytest.raises(BridgeError, match="403"):
        client(bridge, pki, "enclave").submit({"id": "x"})  # the enclave may not submit
    with pytest.raises(BridgeError, match="403"):
        client(bridge, pki, "repo").next_job(0)  # nor may the repo take jobs
    # the enclave pins its CA: a bridge certified by anyone else is refused
    with pytest.raises(BridgeError, match="TLS"):
        client(bridge, pki, "enclave", ca="rogue-ca").next_job(0)
    assert json.dumps  # keep the import for readers of the job format


@pytest.mark.parametrize("step", ["after-decide", "after-sign", "after-log-append", "before-post"])
def test_kill_9_at_each_step_still_gives_one_signature_logged_once(
    tmp_path: Path,
    pki: dict[str, Issued],
    step: str,
    setup: tuple[World, Path, Path, Path],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    import os

    server = _bridge(tmp_path, pki)
    url = next(server)
    request.addfinalizer(server.close)  # stops the bridge
    world, home, _, pkg = setup
    ev = evidence(world, tmp_path / "ev", pkg)
    assert sign_package(home, pkg, ev, "p1").returncode == 0
    repo_side = client(url, pki, "repo")
    files = upload(repo_side, pkg, ev)
    repo_side.submit(
        {
            "id": "crash-job",
            "kind": "transition",
            "repo": "core",
            "arch": "x86_64",
            "add": [pkg.name],
            "files": files,
            "parent": None,
        }
    )
    run = [sys.executable, "-m", "reposeal.cli", *enclave_run_args(url, home, pki, wait="3")]
    crashed = subprocess.run(
        run, env={**os.environ, "REPOSEAL_FAULT": step}, capture_output=True, text=True, check=False
    )
    assert crashed.returncode == -9, crashed.stderr
    again = subprocess.run(run, capture_output=True, text=True, check=False)
    assert again.returncode == 0 and "served 1 job" in again.stdout, again.stderr
    result = repo_side.job("crash-job")["result"]
    assert result["decision"] == "accept"
    status = json.loads(cli("enclave", "status", "--json", "--home", str(home)).stdout)
    assert status["log_size"] == 3  # genesis, the package, one database: whatever the crash
    audit = json.loads(cli("enclave", "audit", "--json", str(home)).stdout)
    assert audit["ok"] and audit["signatures"] == 2


def test_submit_and_result_from_the_command_line(
    tmp_path: Path,
    pki: dict[str, Issued],
    bridge: str,
    setup: tuple[World, Path, Path, Path],  # noqa: F811
) -> None:
    world, home, _, pkg = setup
    ev = evidence(world, tmp_path / "ev", pkg)
    assert sign_package(home, pkg, ev, "p1").returncode == 0
    tls = [
        "--bridge",
        bridge,
        "--cert",
        str(pki["repo"].cert),
        "--key",
        str(pki["repo"].key),
        "--ca",
        str(pki["ca"].cert),
    ]
    sub = cli(
        "bridge",
        "submit",
        *tls,
        "--job-id",
        "cli-1",
        "--repo",
        "core",
        "--arch",
        "x86_64",
        "--add",
        str(pkg),
        "--evidence",
        str(ev),
        "--parent",
        "none",
    )
    assert sub.returncode == 0, sub.stderr
    assert cli("bridge", "result", *tls, "--job-id", "cli-1").returncode == 1  # still waiting
    assert cli(*enclave_run_args(bridge, home, pki)).returncode == 0
    sig = tmp_path / "core.db.sig"
    done = cli("bridge", "result", *tls, "--job-id", "cli-1", "-o", str(sig))
    assert done.returncode == 0 and sig.stat().st_size > 0


@pytest.mark.parametrize(
    "files",
    [
        {"../../etc/cron.d/x": "0" * 64},
        {"packages/.hidden": "0" * 64},
        {"packages/x": "not-a-hash"},
        {"db": "0" * 64},  # a database to sign: there is no such thing
        {"db/repo.db.tar": "0" * 64},
        "not a dict",
    ],
)
def test_the_enclave_trusts_no_job_field_from_the_bridge(tmp_path: Path, files: object) -> None:
    from reposeal.enclave.runner import malformed

    job = {"id": "evil", "kind": "transition", "repo": "core", "arch": "x86_64", "files": files}
    result = malformed(job)
    assert result is not None and result["decision"] == "refuse"
    assert not list(tmp_path.iterdir())  # nothing written anywhere


@pytest.mark.parametrize("kind", ["db", "sign", "", None])
def test_the_enclave_takes_no_database_to_sign(kind: object) -> None:
    """The enclave writes every byte it signs: a job that hands it a database is not a job."""
    from reposeal.enclave.runner import malformed

    job = {"id": "evil", "kind": kind, "repo": "core", "arch": "x86_64", "files": {}}
    result = malformed(job)
    assert result is not None and "never takes a database" in result["reasons"][0]


def test_the_enclave_refuses_to_start_without_a_sandbox(
    tmp_path: Path,
    pki: dict[str, Issued],
    setup: tuple[World, Path, Path, Path],  # noqa: F811
) -> None:
    import os

    _, home, _, _ = setup
    args = [
        sys.executable,
        "-m",
        "reposeal.cli",
        *enclave_run_args("https://127.0.0.1:9", home, pki),
    ]
    out = subprocess.run(
        args, capture_output=True, text=True, check=False, env={**os.environ, "PATH": str(tmp_path)}
    )  # no bwrap to be found
    assert out.returncode != 0 and "bubblewrap cannot run" in out.stderr


def test_an_enclave_whose_disk_was_rolled_back_signs_nothing(
    tmp_path: Path,
    pki: dict[str, Issued],
    bridge: str,
    setup: tuple[World, Path, Path, Path],  # noqa: F811
) -> None:
    """Class 9: the enclave's own log cut back to an older checkpoint it signed itself is
    refused, against the checkpoint it published at the repo machine."""
    import shutil

    world, home, _, pkg = setup
    backup = tmp_path / "backup"
    shutil.copytree(home, backup)  # an old copy of the disk: genesis only
    ev = evidence(world, tmp_path / "ev", pkg)
    assert sign_package(home, pkg, ev, "p1").returncode == 0
    repo_side = client(bridge, pki, "repo")
    files = upload(repo_side, pkg, ev)
    repo_side.submit({"id": "t1", "kind": "transition", "repo": "core", "arch": "x86_64",
                      "add": [pkg.name], "files": files})  # fmt: skip
    assert cli(*enclave_run_args(bridge, home, pki)).returncode == 0
    assert repo_side.log_size() == 3  # the bridge's copy: genesis, the package, the database
    shutil.rmtree(home)
    shutil.copytree(backup, home)  # the disk rolled back
    repo_side.submit({"id": "t2", "kind": "transition", "repo": "core", "arch": "x86_64",
                      "add": [pkg.name], "files": files})  # fmt: skip
    out = cli(*enclave_run_args(bridge, home, pki))
    assert out.returncode != 0 and "rolled back" in out.stderr, out.stderr
    assert "result" not in repo_side.job("t2") or not repo_side.job("t2")["result"]
    status = json.loads(cli("enclave", "status", "--json", "--home", str(home)).stdout)
    assert status["log_size"] == 1  # nothing was signed or logged
    # the same check runs before every job, against the head the bridge hands out with it
    from reposeal.enclave.home import EnclaveHome
    from reposeal.enclave.home_files import EnclaveStateError
    from reposeal.enclave.runner import _check_head

    size, note = repo_side.log_head()
    assert note is not None
    with pytest.raises(EnclaveStateError, match="rolled back"):
        _check_head(EnclaveHome(home), {"size": size, "checkpoint": note.decode()})
    # what the bridge adds that our key did not sign proves nothing, and breaks nothing
    _check_head(EnclaveHome(home), {"size": "many", "checkpoint": "not a note"})
    _check_head(EnclaveHome(home), ["not", "a", "head"])


def test_a_port_in_use_is_a_message_not_a_traceback(tmp_path: Path, pki: dict[str, Issued]) -> None:
    taken = socket.create_server(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    out = cli("bridge", "serve", "--dir", str(tmp_path / "q"), "--listen", f"127.0.0.1:{port}",
              "--cert", str(pki["bridge"].cert), "--key", str(pki["bridge"].key),
              "--client-ca", str(pki["ca"].cert))  # fmt: skip
    taken.close()
    assert out.returncode == 1 and "in use" in out.stderr and "Traceback" not in out.stderr
    bad = cli("bridge", "serve", "--dir", str(tmp_path / "q"), "--listen", "nohost",
              "--cert", str(pki["bridge"].cert), "--key", str(pki["bridge"].key),
              "--client-ca", str(pki["ca"].cert))  # fmt: skip
    assert bad.returncode == 2, bad.stderr


def test_verify_takes_the_architecture_from_the_url_or_asks_for_it() -> None:
    out = cli("verify", "--repo-url", "file:///srv/repo", "--name", "core", "--keyring",
              "/dev/null", "--state-dir", "/tmp/x")  # fmt: skip
    assert out.returncode == 2 and "--arch is needed" in out.stderr


def test_a_connection_the_bridge_dropped_is_opened_again(
    tmp_path: Path, pki: dict[str, Issued]
) -> None:
    import os

    """Issue 16, item 2: a kept-alive connection that died while idle (the bridge restarted,
    or its keep-alive ran out) is reopened; the request goes through, nothing is lost."""
    port = free_port()
    args = [sys.executable, "-m", "reposeal.cli", "bridge", "serve", "--dir", str(tmp_path / "q"),
            "--listen", f"127.0.0.1:{port}", "--cert", str(pki["bridge"].cert),
            "--key", str(pki["bridge"].key), "--client-ca", str(pki["ca"].cert)]  # fmt: skip

    def start() -> subprocess.Popen[bytes]:
        env = {**os.environ, "REPOSEAL_KEEPALIVE": "0.5"}
        proc = subprocess.Popen(args, stderr=subprocess.DEVNULL, env=env)
        for _ in range(150):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return proc
            except OSError:
                time.sleep(0.1)
        raise AssertionError("the bridge did not start")

    first = start()
    repo_side = client(f"https://127.0.0.1:{port}", pki, "repo")
    assert repo_side.log_size() == 0  # the connection is now kept alive
    time.sleep(1.5)  # idle past the bridge's keep-alive (0.5 s here): it closes the connection
    assert repo_side.log_size() == 0
    first.terminate()
    first.wait(10)
    second = start()
    try:
        assert repo_side.log_size() == 0  # the dead connection is replaced, not an error
        (tmp_path / "blob").write_bytes(b"x")
        assert repo_side.put_blob(tmp_path / "blob")
    finally:
        second.terminate()
        second.wait(10)
