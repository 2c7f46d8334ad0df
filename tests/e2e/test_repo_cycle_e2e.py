"""The update cycle end to end on 127.0.0.1: builds and approvals go into the real repo
service, the cycle asks a real enclave (bubblewrap, mutual TLS) to sign the packages and
then the database, publishes to a mirror tree, and the real pacman installs from it while
trusting only the enclave's key. A source lacking one approval stays where it is."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from reposeal.client.scratch import ScratchPacman
from reposeal.evidence.statements import Approval, Build, to_bytes
from reposeal.protocol.bridge_client import BridgeClient
from reposeal.tls import Issued, client_context
from tests import tools
from tests.e2e.test_repo_intake_e2e import service, start_service, world  # noqa: F401
from tests.policy.world import World

pytestmark = pytest.mark.e2e
COMMIT = "d" * 40


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reposeal.cli", *args], capture_output=True, text=True, check=False
    )


def init_enclave(tmp_path: Path, world: World) -> Path:  # noqa: F811
    """An enclave home under the policy the service was started with (the world's admin 3
    holds the repository key)."""
    home = tmp_path / "enclave"
    key = tmp_path / "repo.key"
    key.write_text(world.admins[2].signer.path.read_text())
    out = cli(
        "enclave",
        "init",
        "--home",
        str(home),
        "--signer",
        f"soft:{key}",
        "--policy",
        str(tmp_path / "policy.json"),
        "--origin",
        "test.example/log",
    )
    assert out.returncode == 0, out.stderr
    return home


@pytest.fixture
def enclave(tmp_path: Path, world: World, service: object) -> Path:  # noqa: F811
    return init_enclave(tmp_path, world)  # after the service wrote the policy


def as_role(service: tuple[str, dict[str, Issued]], role: str) -> BridgeClient:  # noqa: F811
    url, certs = service
    return BridgeClient(url, client_context(certs[role], certs["ca"].cert), timeout=30)


def enclave_run(service: tuple[str, dict[str, Issued]], home: Path) -> list[str]:  # noqa: F811
    """`enclave run` arguments for this service's bridge."""
    url, certs = service
    return [
        "enclave",
        "run",
        "--home",
        str(home),
        "--bridge",
        url,
        "--cert",
        str(certs["enclave"].cert),
        "--key",
        str(certs["enclave"].key),
        "--ca",
        str(certs["ca"].cert),
    ]


def run_enclave(service: tuple[str, dict[str, Issued]], home: Path) -> str:  # noqa: F811
    out = cli(*enclave_run(service, home), "--once", "--wait", "0")
    assert out.returncode == 0, out.stderr
    return out.stdout


def cycle(tmp_path: Path, *extra: str) -> list[dict]:
    out = cli(
        "repo",
        "cycle",
        "--json",
        "--dir",
        str(tmp_path / "srv"),
        "--mirror",
        str(tmp_path / "mirror"),
        "--policy",
        str(tmp_path / "policy.json"),
        *extra,
    )
    assert out.returncode == 0, out.stderr
    return list(json.loads(out.stdout))


def pacman_trusting_the_enclave(tmp_path: Path, world: World, pool: Path) -> ScratchPacman:  # noqa: F811
    """A scratch pacman for the mirror's core, trusting only the enclave's key."""
    cert = tmp_path / "enclave.asc"
    cert.write_text(world.admins[2].cert)
    scratch = ScratchPacman(tmp_path / "pacman", {"core": pool})
    scratch.base.mkdir()
    scratch.trust(cert, world.admins[2].fpr)
    scratch.write_conf()
    return scratch


def mirrored_log_names(mirror: Path, home: Path, db: Path) -> list[dict]:
    """MIRROR/log holds the enclave's whole log as C2SP tiles with its signed checkpoint, and
    names the published database; returns the entries."""
    import struct

    from reposeal.translog.checkpoint import NoteVerifier, verify_checkpoint
    from reposeal.translog.merkle import leaf_hash, root_of_leaves
    from reposeal.translog.store import TransparencyLog
    from reposeal.translog.tiles import tile_path

    with TransparencyLog(home / "log.sqlite") as log:
        size, genesis = log.size, json.loads(log.entry(0))
    verifier = NoteVerifier.decode(genesis["note_verifier"])
    note = (mirror / "log" / "checkpoint").read_bytes()
    cp = verify_checkpoint(note, verifier, "test.example/log")
    assert cp.size == size
    bundle = (mirror / "log" / tile_path("entries", 0, size)).read_bytes()
    entries = []
    while bundle:
        (n,) = struct.unpack(">H", bundle[:2])
        entries.append(bundle[2 : 2 + n])
        bundle = bundle[2 + n :]
    assert root_of_leaves([leaf_hash(e) for e in entries]) == cp.root
    hashes = (mirror / "log" / tile_path(0, 0, size)).read_bytes()
    assert hashes == b"".join(leaf_hash(e) for e in entries)
    docs = [json.loads(e) for e in entries]
    published = hashlib.sha256(db.read_bytes()).hexdigest()
    assert any(d.get("db_sha256") == published and d["type"] == "db" for d in docs)
    return docs


def send(
    world: World,  # noqa: F811
    service: tuple[str, dict[str, Issued]],  # noqa: F811
    pkg: Path,
    spec: tuple,
    approvers: int,
    repo: str = "core",
    commit: str = COMMIT,
) -> None:
    base = spec[0]
    pkgbuild = hashlib.sha256(tools.pkgbuild(*spec).encode()).hexdigest()
    sha = hashlib.sha256(pkg.read_bytes()).hexdigest()
    build = to_bytes(Build(base, commit, pkg.name, sha, "0" * 64))
    builder = as_role(service, "builder")
    for b in world.builders[:2]:
        builder.upload_build(pkg, build, b.sign(build))
    approval = to_bytes(Approval(repo, base, commit, pkgbuild))
    source = as_role(service, "source")
    for m in world.maintainers[:approvers]:
        source.push_statement(approval, m.sign(approval))


def test_approved_builds_are_signed_published_and_installed(
    tmp_path: Path,
    world: World,  # noqa: F811
    service: tuple[str, dict[str, Issued]],  # noqa: F811
    enclave: Path,
    built_packages: dict[str, Path],
) -> None:
    send(world, service, built_packages["hello-1.0"], tools.PKGBUILDS["hello-1.0"], approvers=2)
    send(world, service, built_packages["world-2.0"], tools.PKGBUILDS["world-2.0"], approvers=1)

    (started,) = cycle(tmp_path)
    assert started["step"] == "sign-packages" and started["sources"] == [["hello", COMMIT]]
    assert "served 1 job" in run_enclave(service, enclave)
    (staged,) = cycle(tmp_path)
    assert staged["step"] == "propose", staged
    assert "served 1 job" in run_enclave(service, enclave)
    (done,) = cycle(tmp_path)
    assert done["step"] == "done", done
    assert cycle(tmp_path) == [], "nothing is published twice"

    status = as_role(service, "repo").status()
    (waiting,) = status["waiting"]
    assert waiting["pkgbase"] == "world" and "1 maintainer approvals" in waiting["missing"][0]

    pool = tmp_path / "mirror" / "core" / "os" / "x86_64"
    scratch = pacman_trusting_the_enclave(tmp_path, world, pool)
    tools.run_text(scratch.command("-Sy"))
    tools.run_text(scratch.command("-S", "--noconfirm", "hello"))
    assert "hello 1.0-1" in tools.run_text(scratch.command("-Q", "hello")).stdout
    # the files database is signed too (DatabaseRequired): pacman -F finds the package's files
    tools.run_text(scratch.command("-Fy"))
    owner = tools.run_text(scratch.command("-F", "usr/share/hello/message")).stdout
    assert "core/hello 1.0-1" in owner, owner
    tools.gpg_kill(scratch.gpgdir)
    audit = json.loads(cli("enclave", "audit", "--json", str(enclave)).stdout)
    assert audit["ok"] and audit["signatures"] == 2, audit
    # then the log: tiles and the checkpoint, the checkpoint signed by the repository key too
    mirrored_log_names(tmp_path / "mirror", enclave, pool / "core.db")
    checkpoint = tmp_path / "mirror" / "log" / "checkpoint"
    gpg = tmp_path / "gpg"
    gpg.mkdir(mode=0o700)
    tools.run(["gpg", "--homedir", str(gpg), "--batch", "--import", str(tmp_path / "enclave.asc")])
    tools.run(
        [
            "gpg",
            "--homedir",
            str(gpg),
            "--batch",
            "--trust-model",
            "always",
            "--verify",
            str(checkpoint.with_name("checkpoint.sig")),
            str(checkpoint),
        ]
    )
    tools.gpg_kill(gpg)


def cycle_with_fault(tmp_path: Path, fault: str) -> None:
    import os

    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "reposeal.cli",
            "repo",
            "cycle",
            "--dir",
            str(tmp_path / "srv"),
            "--mirror",
            str(tmp_path / "mirror"),
            "--policy",
            str(tmp_path / "policy.json"),
        ],
        env={**os.environ, "REPOSEAL_FAULT": fault},
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == -9, (fault, out.returncode, out.stderr)


def test_kill_9_at_every_step_of_the_cycle_keeps_pacman_working(
    tmp_path: Path,
    world: World,  # noqa: F811
    service: tuple[str, dict[str, Issued]],  # noqa: F811
    enclave: Path,
    built_packages: dict[str, Path],
) -> None:
    send(world, service, built_packages["hello-1.0"], tools.PKGBUILDS["hello-1.0"], approvers=2)
    cycle(tmp_path)
    run_enclave(service, enclave)
    cycle(tmp_path)
    run_enclave(service, enclave)
    assert cycle(tmp_path)[0]["step"] == "done"

    pool = tmp_path / "mirror" / "core" / "os" / "x86_64"
    scratch = pacman_trusting_the_enclave(tmp_path, world, pool)

    def consistent() -> list[str]:
        """pacman syncs (the signature holds) and every package it lists is on the mirror."""
        tools.run_text(scratch.command("-Sy"))
        tools.run_text(scratch.command("-Fy"))  # the files database's signature holds too
        listed = tools.run_text(scratch.command("-Sl", "core")).stdout.split("\n")
        names = [line.split()[1] for line in listed if line.strip()]
        for line in listed:
            if line.strip():
                _, name, version = line.split()[:3]
                assert list(pool.glob(f"{name}-{version}-*.pkg.tar*.sig")), line
        return names

    assert consistent() == ["hello"]
    send(world, service, built_packages["world-2.0"], tools.PKGBUILDS["world-2.0"], approvers=2)
    for fault in ("cycle-planned", "submitted-packages"):
        cycle_with_fault(tmp_path, fault)
        assert consistent() == ["hello"]
    run_enclave(service, enclave)
    for fault in ("packages-answered", "pool-written", "submitted-transition"):
        cycle_with_fault(tmp_path, fault)
        assert consistent() == ["hello"], fault
    run_enclave(service, enclave)
    cycle_with_fault(tmp_path, "db-answered")
    assert consistent() == ["hello"]
    cycle_with_fault(tmp_path, "published")
    assert consistent() == ["hello", "world"]
    generation = (pool / "core.current").readlink()
    cycle_with_fault(tmp_path, "log-exported")
    cycle_with_fault(tmp_path, "saved-done")
    assert cycle(tmp_path) == []
    assert (pool / "core.current").readlink() == generation, "nothing published twice"
    assert consistent() == ["hello", "world"]
    tools.run_text(scratch.command("-S", "--noconfirm", "world"))
    tools.gpg_kill(scratch.gpgdir)
    audit = json.loads(cli("enclave", "audit", "--json", str(enclave)).stdout)
    assert audit["ok"] and audit["signatures"] == 4, audit  # each job signed exactly once


def test_the_service_runs_the_cycle_by_itself(
    tmp_path: Path,
    world: World,  # noqa: F811
    built_packages: dict[str, Path],
) -> None:
    """`repo serve --mirror` with a long-lived `enclave run`: the last approval arriving is
    all it takes for the package to appear, signed, on the mirror."""
    import time

    server = start_service(tmp_path, world, "--mirror", str(tmp_path / "mirror"))
    svc = next(server)
    home = init_enclave(tmp_path, world)
    enclave = subprocess.Popen(
        [sys.executable, "-m", "reposeal.cli", *enclave_run(svc, home), "--wait", "5"],
        stderr=subprocess.PIPE,
    )
    try:
        send(world, svc, built_packages["hello-1.0"], tools.PKGBUILDS["hello-1.0"], approvers=2)
        db = tmp_path / "mirror" / "core" / "os" / "x86_64" / "core.db"
        deadline = time.monotonic() + 60
        status = as_role(svc, "repo").status()
        while not (status["cycles"] and status["cycles"][0]["step"] == "done"):
            assert time.monotonic() < deadline, status
            time.sleep(0.2)
            status = as_role(svc, "repo").status()
        assert db.exists() and status["ready"] == [], status
        (published,) = status["published"]  # the last published database, per repo/arch
        assert published["repo"] == "core" and published["seconds_left"] > 86400, published
        assert published["db_sha256"] == hashlib.sha256(db.read_bytes()).hexdigest()
        mirrored_log_names(tmp_path / "mirror", home, db)
    finally:
        enclave.terminate()
        enclave.wait(10)
        server.close()
    scratch = pacman_trusting_the_enclave(tmp_path, world, db.parent)
    tools.run_text(scratch.command("-Sy"))
    tools.run_text(scratch.command("-S", "--noconfirm", "hello"))
    tools.gpg_kill(scratch.gpgdir)


def test_a_removal_with_quorum_disappears_and_one_without_waits(
    tmp_path: Path,
    world: World,  # noqa: F811
    service: tuple[str, dict[str, Issued]],  # noqa: F811
    enclave: Path,
    built_packages: dict[str, Path],
) -> None:
    from reposeal.evidence.statements import Removal

    send(world, service, built_packages["hello-1.0"], tools.PKGBUILDS["hello-1.0"], approvers=2)
    send(world, service, built_packages["world-2.0"], tools.PKGBUILDS["world-2.0"], approvers=2)
    for _ in range(2):
        cycle(tmp_path)
        run_enclave(service, enclave)
    assert cycle(tmp_path)[0]["step"] == "done"

    removal = to_bytes(Removal("core", (("world", "2.0-1"),)))
    source = as_role(service, "source")
    source.push_statement(removal, world.maintainers[0].sign(removal))
    assert cycle(tmp_path) == []  # one approval: nothing happens
    (waiting,) = as_role(service, "repo").status()["waiting"]
    assert waiting["remove"] == ["world"] and "needs 2" in waiting["missing"][0], waiting
    # the second maintainer's signature comes by `repo remove` on the repo machine itself
    statement = tmp_path / "remove-world.json"
    statement.write_bytes(removal)
    statement.with_name(statement.name + ".sig").write_bytes(world.maintainers[1].sign(removal))
    out = cli(
        "repo", "remove", str(statement), "--dir", str(tmp_path / "srv"),
        "--mirror", str(tmp_path / "mirror"), "--policy", str(tmp_path / "policy.json"), "--json",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["waiting"] == [] and len(doc["cycles"]) == 1, doc
    assert doc["cycles"][0]["step"] == "propose", doc  # nothing to sign but the database
    run_enclave(service, enclave)
    assert cycle(tmp_path)[0]["step"] == "done"

    pool = tmp_path / "mirror" / "core" / "os" / "x86_64"
    scratch = pacman_trusting_the_enclave(tmp_path, world, pool)
    tools.run_text(scratch.command("-Sy"))
    listed = tools.run_text(scratch.command("-Sl", "core")).stdout
    assert "hello 1.0-1" in listed and "world" not in listed, listed
    archived = tmp_path / "mirror" / "archive" / "packages" / "w" / "world"
    assert sorted(p.name.split(".pkg")[0] for p in archived.iterdir()) == ["world-2.0-1-any"] * 2
    assert not list(pool.glob("world-*")), "the removed package left the pool for the archive"
    tools.gpg_kill(scratch.gpgdir)
    status = as_role(service, "repo").status()
    assert status["waiting"] == [] and status["ready"] == [], status


def test_500_uploads_from_4_clients_are_published_exactly_once(
    tmp_path: Path,
    world: World,  # noqa: F811
    service: tuple[str, dict[str, Issued]],  # noqa: F811
    enclave: Path,
) -> None:
    """250 packages, each built by two builders: 500 uploads from 4 clients at once."""
    from concurrent.futures import ThreadPoolExecutor

    from reposeal.alpm.synthetic import write_package

    pkgbuild = hashlib.sha256(b"PKGBUILD").hexdigest()
    (tmp_path / "p").mkdir()
    uploads = []
    source = as_role(service, "source")
    for i in range(250):
        name = f"load{i:03d}"
        pkg = write_package(tmp_path / "p", name, "1-1", "x86_64", pkgbuild_sha256=pkgbuild)
        sha = hashlib.sha256(pkg.read_bytes()).hexdigest()
        build = to_bytes(Build(name, COMMIT, pkg.name, sha, "0" * 64))
        uploads += [(pkg, build, b.sign(build)) for b in world.builders[:2]]
        approval = to_bytes(Approval("core", name, COMMIT, pkgbuild))
        source.push_statement(approval, b"".join(m.sign(approval) for m in world.maintainers[:2]))

    def client_run(share: list) -> int:
        client = as_role(service, "builder")
        for pkg, build, sig in share:
            client.upload_build(pkg, build, sig)
        return len(share)

    with ThreadPoolExecutor(4) as threads:
        assert sum(threads.map(client_run, [uploads[i::4] for i in range(4)])) == 500
    assert len(as_role(service, "repo").status()["ready"]) == 250

    for _ in range(2):
        cycle(tmp_path)
        run_enclave(service, enclave)
    (done,) = cycle(tmp_path)
    assert done["step"] == "done", done
    assert cycle(tmp_path) == []
    pool = tmp_path / "mirror" / "core" / "os" / "x86_64"
    assert len(list(pool.glob("load*.pkg.tar.zst"))) == 250
    assert len(list(pool.glob("load*.pkg.tar.zst.sig"))) == 250
    scratch = pacman_trusting_the_enclave(tmp_path, world, pool)
    tools.run_text(scratch.command("-Sy"))
    listed = tools.run_text(scratch.command("-Sl", "core")).stdout.strip().split("\n")
    assert len(listed) == 250
    tools.gpg_kill(scratch.gpgdir)
    audit = json.loads(cli("enclave", "audit", "--json", str(enclave)).stdout)
    assert audit["ok"] and audit["signatures"] == 2, audit  # one package job, one database


def test_expiring_database_signatures_are_refreshed_and_published(
    tmp_path: Path,
    world: World,  # noqa: F811
    service: tuple[str, dict[str, Issued]],  # noqa: F811
    enclave: Path,
    built_packages: dict[str, Path],
) -> None:
    import time

    from reposeal.repo.expiry import DAY, expiries

    send(world, service, built_packages["hello-1.0"], tools.PKGBUILDS["hello-1.0"], approvers=2)
    for _ in range(2):
        cycle(tmp_path)
        run_enclave(service, enclave)
    assert cycle(tmp_path)[0]["step"] == "done"
    pool = tmp_path / "mirror" / "core" / "os" / "x86_64"
    (e,) = expiries(tmp_path / "mirror")
    assert 6 * DAY < e.seconds_left <= 7 * DAY  # the policy: signatures hold a week
    (late,) = expiries(tmp_path / "mirror", now=time.time() + 7 * DAY - 3600)
    assert late.seconds_left < DAY  # what `repo status` would shout about
    old_sig = (pool / "core.db.tar.gz.sig").read_bytes()
    old_db = (pool / "core.db.tar.gz").read_bytes()

    cycle(tmp_path, "--refresh-before", "1d")  # a week left: nothing to do
    assert "served 0 job" in run_enclave(service, enclave)
    cycle(tmp_path, "--refresh-before", "8d")  # due: the refresh job is queued
    assert "served 1 job" in run_enclave(service, enclave)
    cycle(tmp_path, "--refresh-before", "8d")  # answered: published
    new_sig = (pool / "core.db.tar.gz.sig").read_bytes()
    assert new_sig != old_sig and (pool / "core.db.tar.gz").read_bytes() == old_db
    scratch = pacman_trusting_the_enclave(tmp_path, world, pool)
    tools.run_text(scratch.command("-Sy"))
    assert "core hello 1.0-1" in tools.run_text(scratch.command("-Sl", "core")).stdout
    tools.gpg_kill(scratch.gpgdir)
    audit = json.loads(cli("enclave", "audit", "--json", str(enclave)).stdout)
    assert audit["ok"] and audit["signatures"] == 3, audit  # packages, database, refresh


def test_debug_packages_go_to_the_debug_repository(
    tmp_path: Path,
    world: World,  # noqa: F811
) -> None:
    from reposeal.alpm.synthetic import pkginfo_text, write_package
    from reposeal.policy.document import RepoRule

    rules = [RepoRule("core", ("x86_64",)), RepoRule("core-debug", ("x86_64",))]
    server = start_service(tmp_path, world, policy_doc=world.policy(repos=rules).to_bytes())
    svc = next(server)
    try:
        home = init_enclave(tmp_path, world)
        pkgbuild = hashlib.sha256(b"PKGBUILD").hexdigest()
        builder, source = as_role(svc, "builder"), as_role(svc, "source")
        (tmp_path / "p").mkdir()
        for name in ("tool", "tool-debug"):
            info = pkginfo_text(name, "1-1", "x86_64").replace(
                f"pkgbase = {name}\n".encode(), b"pkgbase = tool\n"
            )
            pkg = write_package(
                tmp_path / "p", name, "1-1", "x86_64", pkgbuild_sha256=pkgbuild, pkginfo=info
            )
            sha = hashlib.sha256(pkg.read_bytes()).hexdigest()
            build = to_bytes(Build("tool", COMMIT, pkg.name, sha, "0" * 64))
            for b in world.builders[:2]:
                builder.upload_build(pkg, build, b.sign(build))
        approval = to_bytes(Approval("core", "tool", COMMIT, pkgbuild))
        source.push_statement(approval, b"".join(m.sign(approval) for m in world.maintainers[:2]))
        for _ in range(2):
            assert len(cycle(tmp_path)) == 2  # core/x86_64 and core-debug/x86_64
            run_enclave(svc, home)
        assert [c["step"] for c in cycle(tmp_path)] == ["done", "done"]
    finally:
        server.close()
    mirror = tmp_path / "mirror"
    assert [p.name for p in (mirror / "core" / "os" / "x86_64").glob("*.pkg.tar.zst")] == [
        "tool-1-1-x86_64.pkg.tar.zst"
    ]
    assert [p.name for p in (mirror / "core-debug" / "os" / "x86_64").glob("*.pkg.tar.zst")] == [
        "tool-debug-1-1-x86_64.pkg.tar.zst"
    ]


def test_architecture_independent_packages_reach_every_architecture(
    tmp_path: Path,
    world: World,  # noqa: F811
    built_packages: dict[str, Path],
) -> None:
    from reposeal.policy.document import RepoRule

    rules = [RepoRule("core", ("x86_64", "aarch64"))]
    server = start_service(tmp_path, world, policy_doc=world.policy(repos=rules).to_bytes())
    svc = next(server)
    try:
        home = init_enclave(tmp_path, world)
        send(world, svc, built_packages["hello-1.0"], tools.PKGBUILDS["hello-1.0"], approvers=2)
        for _ in range(2):
            assert sorted(c["arch"] for c in cycle(tmp_path)) == ["aarch64", "x86_64"]
            run_enclave(svc, home)
        assert [c["step"] for c in cycle(tmp_path)] == ["done", "done"]
    finally:
        server.close()
    for arch in ("x86_64", "aarch64"):
        pool = tmp_path / "mirror" / "core" / "os" / arch
        assert (pool / built_packages["hello-1.0"].name).exists()
        assert (pool / "core.db.sig").exists()
    scratch = pacman_trusting_the_enclave(tmp_path, world, tmp_path / "mirror/core/os/x86_64")
    tools.run_text(scratch.command("-Sy"))
    tools.run_text(scratch.command("-S", "--noconfirm", "hello"))
    tools.gpg_kill(scratch.gpgdir)


def test_a_move_from_testing_to_core_shows_up_in_both_databases(
    tmp_path: Path,
    world: World,  # noqa: F811
    built_packages: dict[str, Path],
) -> None:
    """`repo move hello testing core`: core gains the very file testing has (no new evidence:
    the policy lets testing move to core), then testing loses it (no removal quorum: core
    has that version now); each database signed by the enclave, seen by the real pacman."""
    from reposeal.policy.document import RepoRule

    rules = [RepoRule("testing", ("x86_64",), ("core",)), RepoRule("core", ("x86_64",))]
    server = start_service(tmp_path, world, policy_doc=world.policy(repos=rules).to_bytes())
    svc = next(server)
    mirror = tmp_path / "mirror"
    move = [
        "repo", "move", "--dir", str(tmp_path / "srv"), "--mirror", str(mirror),
        "--policy", str(tmp_path / "policy.json"), "--json",
    ]  # fmt: skip
    try:
        home = init_enclave(tmp_path, world)
        hello = built_packages["hello-1.0"]
        send(world, svc, hello, tools.PKGBUILDS["hello-1.0"], approvers=2, repo="testing")
        for _ in range(2):
            cycle(tmp_path)
            run_enclave(svc, home)
        assert [c["step"] for c in cycle(tmp_path)] == ["done"]

        refused = cli(*move, "hello", "core", "testing")
        assert refused.returncode == 3, refused.stderr
        assert "does not let core move to testing" in refused.stdout
        refused = cli(*move, "world", "testing", "core")
        assert refused.returncode == 3 and "testing does not hold world" in refused.stdout

        out = cli(*move, "hello", "testing", "core")
        assert out.returncode == 0, out.stderr
        (started,) = json.loads(out.stdout)["cycles"]
        assert started["repo"] == "core" and started["step"] == "propose", started
        run_enclave(svc, home)
        (core_done,) = cycle(tmp_path)
        assert core_done["step"] == "done", core_done
        (testing_started,) = cycle(tmp_path)  # then testing, once core is published
        assert testing_started["repo"] == "testing", testing_started
        run_enclave(svc, home)
        assert [c["step"] for c in cycle(tmp_path)] == ["done"]
        assert cycle(tmp_path) == [], "the move is over"
    finally:
        server.close()

    cert = tmp_path / "enclave.asc"
    cert.write_text(world.admins[2].cert)
    scratch = ScratchPacman(
        tmp_path / "pacman",
        {"testing": mirror / "testing/os/x86_64", "core": mirror / "core/os/x86_64"},
    )
    scratch.base.mkdir()
    scratch.trust(cert, world.admins[2].fpr)
    scratch.write_conf()
    tools.run_text(scratch.command("-Sy"))
    assert tools.run_text(scratch.command("-Sl", "testing")).stdout.strip() == ""
    assert "core hello 1.0-1" in tools.run_text(scratch.command("-Sl", "core")).stdout
    tools.run_text(scratch.command("-S", "--noconfirm", "core/hello"))
    tools.gpg_kill(scratch.gpgdir)
    assert (mirror / "core/os/x86_64" / hello.name).exists()
    assert (mirror / "archive/packages/h/hello" / hello.name).exists(), "testing's copy"
    audit = json.loads(cli("enclave", "audit", "--json", str(home)).stdout)
    assert audit["ok"], audit


def test_a_refused_source_is_parked_and_does_not_jam_its_repository(
    tmp_path: Path,
    world: World,  # noqa: F811
    service: tuple[str, dict[str, Issued]],  # noqa: F811
    enclave: Path,
    built_packages: dict[str, Path],
) -> None:
    """Issue 16, item 1: an approved version below the published one is refused once,
    parked with its reason, not submitted again, and later sources go ahead."""
    send(world, service, built_packages["hello-1.1"], tools.PKGBUILDS["hello-1.1"], approvers=2)
    for _ in range(2):
        cycle(tmp_path)
        run_enclave(service, enclave)
    assert cycle(tmp_path)[0]["step"] == "done"
    older = "f" * 40
    send(world, service, built_packages["hello-1.0"], tools.PKGBUILDS["hello-1.0"], approvers=2,
         commit=older)  # fmt: skip
    first = cycle(tmp_path)
    run_enclave(service, enclave)
    answered = cycle(tmp_path)
    failed = [c for c in first + answered if c["step"] == "failed"]
    assert len(failed) == 1, (first, answered, as_role(service, "repo").status())
    failed = failed[0]
    assert any("older than 1.1-1" in r for r in failed["reasons"]), failed
    log_size = json.loads(cli("enclave", "status", "--json", "--home", str(enclave)).stdout)
    for _ in range(3):  # not submitted again, however often the cycle runs
        assert [c for c in cycle(tmp_path) if c["step"] != "failed"] == []
        run_enclave(service, enclave)
    again = json.loads(cli("enclave", "status", "--json", "--home", str(enclave)).stdout)
    assert again["log_size"] == log_size["log_size"]
    status = as_role(service, "repo").status()
    (parked,) = status["parked"]
    assert parked["pkgbase"] == "hello" and parked["commit"] == older, parked
    assert all(w["pkgbase"] != "hello" for w in status["ready"])
    # the next source of the repository goes ahead
    send(world, service, built_packages["world-2.0"], tools.PKGBUILDS["world-2.0"], approvers=2)
    for _ in range(2):
        cycle(tmp_path)
        run_enclave(service, enclave)
    done = [c for c in cycle(tmp_path) if c["step"] == "done"]
    assert any(["world", COMMIT] in c["sources"] for c in done), done


def test_a_withdrawn_source_is_dropped_before_it_is_published(
    tmp_path: Path,
    world: World,  # noqa: F811
    service: tuple[str, dict[str, Issued]],  # noqa: F811
    enclave: Path,
    built_packages: dict[str, Path],
) -> None:
    """Issue 16: a maintainer-signed withdrawal drops a proposal: it waits, with the reason,
    and nothing is submitted to the enclave for it."""
    from reposeal.evidence.statements import Withdrawal

    withdrawal = to_bytes(Withdrawal("core", "hello", COMMIT))
    source = as_role(service, "source")
    source.push_statement(withdrawal, world.maintainers[2].sign(withdrawal))
    send(world, service, built_packages["hello-1.0"], tools.PKGBUILDS["hello-1.0"], approvers=2)
    assert cycle(tmp_path) == []
    status = as_role(service, "repo").status()
    (waiting,) = [w for w in status["waiting"] if w["pkgbase"] == "hello"]
    assert "withdrawn by" in waiting["missing"][0], waiting
    assert status["ready"] == []
    # another maintainer's withdrawal of another commit changes nothing for this one
    other = to_bytes(Withdrawal("core", "world", COMMIT))
    source.push_statement(other, world.maintainers[0].sign(other))
    send(world, service, built_packages["world-2.0"], tools.PKGBUILDS["world-2.0"], approvers=2)
    status = as_role(service, "repo").status()
    assert all(w["pkgbase"] != "hello" for w in status["ready"])
