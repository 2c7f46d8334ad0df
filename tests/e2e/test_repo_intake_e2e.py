"""The repo machine's intake over real mutual TLS on 127.0.0.1: builders send packages with
signed build statements, the source machine sends approvals; each is checked on arrival,
refused uploads leave nothing behind, and status says what waits for which evidence."""

from __future__ import annotations

import hashlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from reposeal.alpm.synthetic import write_package
from reposeal.evidence.statements import Approval, Build, to_bytes
from reposeal.protocol.bridge_client import BridgeClient, BridgeError
from reposeal.tls import Issued, client_context, issue, make_ca
from tests.alpm.hostile import file
from tests.alpm.hostile import package as hostile_package
from tests.policy.world import World, make_world

pytestmark = pytest.mark.e2e
PKGBUILD = hashlib.sha256(b"PKGBUILD").hexdigest()
COMMIT = "c" * 40


@pytest.fixture
def world(tmp_path: Path) -> World:
    (tmp_path / "keys").mkdir()
    return make_world(tmp_path / "keys")


@pytest.fixture
def service(tmp_path: Path, world: World) -> Iterator[tuple[str, dict[str, Issued]]]:
    yield from start_service(tmp_path, world)


def start_service(
    tmp_path: Path, world: World, *extra: str, policy_doc: bytes | None = None
) -> Iterator[tuple[str, dict[str, Issued]]]:
    """`reposeal repo serve` on a free port of 127.0.0.1 (``extra``: more options;
    ``policy_doc``: the policy document, else the world's default one)."""
    ca = make_ca(tmp_path / "pki")
    certs = {"ca": ca}
    for role in ("bridge", "repo", "builder", "source", "enclave"):
        ip = "127.0.0.1" if role == "bridge" else None
        certs[role] = issue(ca, tmp_path / "pki", role, role, server_ip=ip)
    policy = tmp_path / "policy.json"
    raw = policy_doc or world.policy().to_bytes()
    policy.write_bytes(raw)
    policy.with_name("policy.json.sig").write_bytes(b"".join(p.sign(raw) for p in world.admins[:2]))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "reposeal.cli",
            "repo",
            "serve",
            "--dir",
            str(tmp_path / "srv"),
            "--listen",
            f"127.0.0.1:{port}",
            "--cert",
            str(certs["bridge"].cert),
            "--key",
            str(certs["bridge"].key),
            "--client-ca",
            str(ca.cert),
            "--policy",
            str(policy),
            *extra,
        ],
        stderr=subprocess.PIPE,
    )
    for _ in range(150):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    try:
        yield f"https://127.0.0.1:{port}", certs
    finally:
        proc.terminate()
        proc.wait(10)


def as_role(service: tuple[str, dict[str, Issued]], role: str) -> BridgeClient:
    url, certs = service
    return BridgeClient(url, client_context(certs[role], certs["ca"].cert), timeout=30)


def build_statement(pkg: Path, base: str) -> bytes:
    sha = hashlib.sha256(pkg.read_bytes()).hexdigest()
    return to_bytes(Build(base, COMMIT, pkg.name, sha, "0" * 64))


def test_builds_and_approvals_reach_quorum_and_status_says_why_not_before(
    tmp_path: Path, world: World, service: tuple[str, dict[str, Issued]]
) -> None:
    builder, source = as_role(service, "builder"), as_role(service, "source")
    pkg = write_package(tmp_path, "hello", "1.0-1", "x86_64", pkgbuild_sha256=PKGBUILD)
    stmt = build_statement(pkg, "hello")
    approval = to_bytes(Approval("core", "hello", COMMIT, PKGBUILD))

    assert builder.upload_build(pkg, stmt, world.builders[0].sign(stmt))["sha256"]
    source.push_statement(approval, world.maintainers[0].sign(approval))
    (waiting,) = builder.status()["waiting"]
    assert waiting["pkgbase"] == "hello" and waiting["packages"] == [pkg.name]
    assert "1 builders attest" in " ".join(waiting["missing"]), waiting

    builder.upload_build(pkg, stmt, world.builders[1].sign(stmt))  # a second builder agrees
    (waiting,) = source.status()["waiting"]
    assert "1 maintainer approvals" in " ".join(waiting["missing"]), waiting

    source.push_statement(approval, world.maintainers[1].sign(approval))
    status = as_role(service, "repo").status()
    assert status["waiting"] == [] and status["ready"][0]["packages"] == [pkg.name]
    assert status["packages"] == 1 and status["statements"] == {"approval": 1, "build": 1}

    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "reposeal.cli",
            "repo",
            "status",
            "--bridge",
            service[0],
            "--cert",
            str(service[1]["repo"].cert),
            "--key",
            str(service[1]["repo"].key),
            "--ca",
            str(service[1]["ca"].cert),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0 and "ready    core/hello@cccccccccccc" in out.stdout, out.stderr


def test_bad_uploads_are_refused_and_leave_nothing(
    tmp_path: Path, world: World, service: tuple[str, dict[str, Issued]]
) -> None:
    builder, source = as_role(service, "builder"), as_role(service, "source")
    pkg = write_package(tmp_path, "hello", "1.0-1", "x86_64", pkgbuild_sha256=PKGBUILD)
    stmt = build_statement(pkg, "hello")
    assert world.outsider is not None
    refused = r"422.*no valid signature by a key of the policy's builders"
    with pytest.raises(BridgeError, match=refused):
        builder.upload_build(pkg, stmt, world.outsider.sign(stmt))
    with pytest.raises(BridgeError, match=r"422.*no valid signature"):
        builder.upload_build(pkg, stmt, world.maintainers[0].sign(stmt))  # not a builder key
    (tmp_path / "o").mkdir()
    other = write_package(tmp_path / "o", "hello", "1.0-1", "x86_64", pkgbuild_sha256="1" * 64)
    with pytest.raises(BridgeError, match=r"422.*sha256"):
        builder.upload_build(other, stmt, world.builders[0].sign(stmt))  # not the attested file
    evil = tmp_path / "evil" / "hello-1.0-1-x86_64.pkg.tar.zst"
    evil.parent.mkdir()
    evil.write_bytes(hostile_package(file("../../etc/evil", b"x")))
    evil_stmt = build_statement(evil, "hello")
    with pytest.raises(BridgeError, match=r"422.*(traversal|unsafe)"):
        builder.upload_build(evil, evil_stmt, world.builders[0].sign(evil_stmt))
    approval = to_bytes(Approval("core", "hello", COMMIT, PKGBUILD))
    with pytest.raises(BridgeError, match="403"):
        builder.push_statement(approval, world.maintainers[0].sign(approval))  # wrong role
    with pytest.raises(BridgeError, match="403"):
        source.upload_build(pkg, stmt, world.builders[0].sign(stmt))  # wrong role
    with pytest.raises(BridgeError, match=r"422.*expected a build statement"):
        builder.upload_build(pkg, approval, world.builders[0].sign(approval))
    with pytest.raises(BridgeError, match="403"):
        as_role(service, "enclave").status()
    status = source.status()
    assert status["packages"] == 0 and status["statements"] == {}
    blobs = tmp_path / "srv" / "queue" / "blobs"
    assert sorted(p.name for p in blobs.iterdir()) == [], "nothing of a refused upload kept"


def test_500_uploads_from_4_clients_are_each_kept_once(
    tmp_path: Path, world: World, service: tuple[str, dict[str, Issued]]
) -> None:
    signer = world.builders[0]
    (tmp_path / "p").mkdir()
    jobs = []
    for i in range(125):
        pkg = write_package(tmp_path / "p", f"p{i:03d}", "1-1", "x86_64", pkgbuild_sha256=PKGBUILD)
        stmt = build_statement(pkg, f"p{i:03d}")
        jobs.append((pkg, stmt, signer.sign(stmt)))

    def client_run(n: int) -> int:
        client = as_role(service, "builder")
        for pkg, stmt, sig in jobs:  # every client sends all 125: 500 uploads, 4 at a time
            client.upload_build(pkg, stmt, sig)
        return n

    with ThreadPoolExecutor(4) as pool:
        assert sorted(pool.map(client_run, range(4))) == [0, 1, 2, 3]
    status = as_role(service, "repo").status()
    assert status["packages"] == 125 and status["statements"] == {"build": 125}
    blobs = tmp_path / "srv" / "queue" / "blobs"
    assert len(list(blobs.iterdir())) == 125
