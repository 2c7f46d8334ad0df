"""The enclave's home and its sandboxed worker (real bubblewrap) on real makepkg packages."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from reposeal.evidence.statements import Approval, Build, to_bytes
from tests import tools
from tests.alpm.hostile import file, tar_bytes
from tests.policy.world import World, make_world

pytestmark = pytest.mark.e2e
COMMIT = "c" * 40


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reposeal.cli", *args], capture_output=True, text=True, check=False
    )


def write_signed(path: Path, raw: bytes, people: list) -> None:
    path.write_bytes(raw)
    path.with_name(path.name + ".sig").write_bytes(b"".join(p.sign(raw) for p in people))


@pytest.fixture
def setup(tmp_path: Path, built_packages: dict[str, Path]) -> tuple[World, Path, Path, Path]:
    (tmp_path / "keys").mkdir()
    world = make_world(tmp_path / "keys")
    policy = tmp_path / "policy.json"
    write_signed(policy, world.policy().to_bytes(), world.admins[:2])
    (tmp_path / "repo.key").write_text((world.admins[2].signer.path).read_text())
    home = tmp_path / "enclave"
    out = cli(
        "enclave",
        "init",
        "--home",
        str(home),
        "--signer",
        f"soft:{tmp_path / 'repo.key'}",
        "--policy",
        str(policy),
        "--origin",
        "test.example/log",
    )
    assert out.returncode == 0, out.stderr
    repo = tmp_path / "repo"
    repo.mkdir()
    pkg = repo / built_packages["hello-1.0"].name
    shutil.copy2(built_packages["hello-1.0"], pkg)
    assert cli("db", "add", str(repo / "core.db.tar.gz"), str(pkg)).returncode == 0
    return world, home, repo, pkg


def evidence(world: World, folder: Path, pkg: Path, approvers: int = 2, builders: int = 2) -> Path:
    folder.mkdir(exist_ok=True)
    pkgbuild = tools.pkgbuild(*tools.PKGBUILDS["hello-1.0"]).encode()
    sha = hashlib.sha256(pkg.read_bytes()).hexdigest()
    approval = to_bytes(Approval("core", "hello", COMMIT, hashlib.sha256(pkgbuild).hexdigest()))
    write_signed(folder / "approval.json", approval, world.maintainers[:approvers])
    build = to_bytes(Build("hello", COMMIT, pkg.name, sha, "0" * 64))
    write_signed(folder / "build.json", build, world.builders[:builders])
    return folder


def dry(home: Path, repo: Path, db: Path, ev: Path | None = None) -> tuple[int, dict]:
    args = [
        "enclave",
        "dry-run",
        "--home",
        str(home),
        "--repo",
        "core",
        "--arch",
        "x86_64",
        "--db",
        str(db),
        "--packages",
        str(repo),
    ]
    if ev is not None:
        args += ["--evidence", str(ev)]
    out = cli(*args)
    return out.returncode, json.loads(out.stdout) if out.stdout.strip() else {"err": out.stderr}


def test_dry_run_accepts_with_evidence_and_explains_refusals(
    tmp_path: Path, setup: tuple[World, Path, Path, Path]
) -> None:
    world, home, repo, pkg = setup
    db = repo / "core.db.tar.gz"
    code, result = dry(home, repo, db, evidence(world, tmp_path / "ev", pkg))
    assert (code, result["decision"]) == (0, "accept"), result
    code, result = dry(home, repo, db)
    assert code == 3 and any("builders attest" in r for r in result["reasons"])
    code, result = dry(home, repo, db, evidence(world, tmp_path / "ev1", pkg, builders=1))
    assert code == 3 and any("1 builders attest" in r for r in result["reasons"])
    code, result = dry(home, repo, db, evidence(world, tmp_path / "ev2", pkg, approvers=1))
    assert code == 3 and any("1 maintainer approvals" in r for r in result["reasons"])
    status = json.loads(cli("enclave", "status", "--json", "--home", str(home)).stdout)
    assert status["log_size"] == 1 and status["policy_version"] == 1


def _huge_claim() -> list:
    import tarfile

    info = tarfile.TarInfo("x-1-1/desc")
    info.size = 10 << 30  # a 10 GB claimed size, no data behind it
    return [(info, None)]


def _symlink() -> list:
    import tarfile

    info = tarfile.TarInfo("x-1-1/desc")
    info.type, info.linkname = tarfile.SYMTYPE, "/etc/shadow"
    return [(info, None)]


HOSTILE_DBS = {
    "10 GB claimed": _huge_claim(),
    "symlink": _symlink(),
    "traversal": [file("../x-1-1/desc", b"%NAME%\nx\n\n")],
    "duplicate": [file("x-1-1/desc", b"%NAME%\nx\n\n"), file("x-1-1/desc", b"%NAME%\nx\n\n")],
    "huge field": [file("x-1-1/desc", b"%NAME%\n" + b"x" * (1 << 20) + b"\n\n")],
    "truncated zstd": [],
}


@pytest.mark.parametrize("case", sorted(HOSTILE_DBS))
def test_hostile_databases_are_refused_and_the_enclave_keeps_working(
    tmp_path: Path, setup: tuple[World, Path, Path, Path], case: str
) -> None:
    world, home, repo, pkg = setup
    import gzip

    bad = tmp_path / "bad.db.tar.gz"
    bad.write_bytes(gzip.compress(tar_bytes(HOSTILE_DBS[case])))
    if case == "truncated zstd":
        from backports import zstd

        bad = tmp_path / "bad.db.tar.zst"
        whole = zstd.compress(tar_bytes([file("x-1-1/desc", b"%NAME%\nx\n\n" * 500)]))
        bad.write_bytes(whole[: len(whole) // 2])
    code, result = dry(home, repo, bad)
    assert code == 3 and result["decision"] == "refuse" and result["reasons"], result
    code, result = dry(home, repo, repo / "core.db.tar.gz", evidence(world, tmp_path / "ev", pkg))
    assert code == 0, result


def test_tampered_log_stops_the_enclave(setup: tuple[World, Path, Path, Path]) -> None:
    import sqlite3

    _, home, _, _ = setup
    db = sqlite3.connect(home / "log.sqlite")
    db.execute("UPDATE entry SET data = ? WHERE idx = 0", (b'{"type":"genesis"}',))
    db.commit()
    db.close()
    out = cli("enclave", "status", "--home", str(home))
    assert out.returncode != 0 and "does not verify" in out.stderr


def test_sign_db_signs_logs_and_answers_retries_once(
    tmp_path: Path, setup: tuple[World, Path, Path, Path], built_packages: dict[str, Path]
) -> None:
    import pysequoia

    from reposeal.client.scratch import ScratchPacman

    world, home, repo, pkg = setup
    ev = evidence(world, tmp_path / "ev", pkg)
    db = repo / "core.db.tar.gz"
    args = [
        "enclave",
        "sign-db",
        "--home",
        str(home),
        "--repo",
        "core",
        "--arch",
        "x86_64",
        "--db",
        str(db),
        "--evidence",
        str(ev),
        "--packages",
        str(repo),
    ]
    first = cli(*args, "--job-id", "job-1", "-o", str(repo / "core.db.sig"))
    assert first.returncode == 0, first.stderr
    receipt = json.loads(first.stdout)
    assert receipt["decision"] == "accept" and receipt["log_index"] == 1
    sig = (repo / "core.db.sig").read_bytes()
    parsed = pysequoia.Sig.from_bytes(sig)
    assert parsed.expiration is not None and parsed.created is not None
    assert round((parsed.expiration - parsed.created).total_seconds()) == 7 * 86400
    # a retried job gets the logged answer, not a second signature
    again = json.loads(cli(*args, "--job-id", "job-1").stdout)
    assert again["signature"] == receipt["signature"] and again["log_index"] == 1
    status = json.loads(cli("enclave", "status", "--json", "--home", str(home)).stdout)
    assert status["log_size"] == 2 and status["packages_signed"] == 1

    # the real pacman trusts the enclave's key and syncs what it signed
    cert = tmp_path / "repo.asc"
    cert.write_text(world.admins[2].cert)
    scratch = ScratchPacman(tmp_path / "pacman", {"core": repo})
    scratch.base.mkdir()
    scratch.trust(cert, world.admins[2].fpr)
    scratch.write_conf()
    tools.run_text(scratch.command("-Sy"))
    assert "core hello 1.0-1" in tools.run_text(scratch.command("-Sl", "core")).stdout
    tools.gpg_kill(scratch.gpgdir)

    # an upgrade with evidence goes through; the old database again is a refused downgrade
    new_pkg = repo / built_packages["hello-1.1"].name
    shutil.copy2(built_packages["hello-1.1"], new_pkg)
    db11 = tmp_path / "next" / "core.db.tar.gz"
    db11.parent.mkdir()
    assert cli("db", "add", str(db11), str(new_pkg)).returncode == 0
    ev11 = tmp_path / "ev11"
    ev11.mkdir()
    pkgbuild = tools.pkgbuild(*tools.PKGBUILDS["hello-1.1"]).encode()
    write_signed(
        ev11 / "a.json",
        to_bytes(Approval("core", "hello", "d" * 40, hashlib.sha256(pkgbuild).hexdigest())),
        world.maintainers[:2],
    )
    write_signed(
        ev11 / "b.json",
        to_bytes(
            Build(
                "hello",
                "d" * 40,
                new_pkg.name,
                hashlib.sha256(new_pkg.read_bytes()).hexdigest(),
                "0" * 64,
            )
        ),
        world.builders[:2],
    )
    up = cli(
        "enclave",
        "sign-db",
        "--home",
        str(home),
        "--job-id",
        "job-2",
        "--repo",
        "core",
        "--arch",
        "x86_64",
        "--db",
        str(db11),
        "--evidence",
        str(ev11),
        "--packages",
        str(repo),
    )
    assert up.returncode == 0, up.stdout + up.stderr
    replay = cli(*args, "--job-id", "job-3")
    assert replay.returncode == 3
    assert any("older than 1.1-1" in r for r in json.loads(replay.stdout)["reasons"])
    status = json.loads(cli("enclave", "status", "--json", "--home", str(home)).stdout)
    assert status["log_size"] == 4  # genesis, two signatures, one logged refusal


def test_audit_replays_the_log_and_catches_a_rogue_signature(
    tmp_path: Path, setup: tuple[World, Path, Path, Path]
) -> None:
    from reposeal.enclave.home import EnclaveHome

    world, home, repo, pkg = setup
    ev = evidence(world, tmp_path / "ev", pkg)
    assert (
        cli(
            "enclave",
            "sign-db",
            "--home",
            str(home),
            "--job-id",
            "j1",
            "--repo",
            "core",
            "--arch",
            "x86_64",
            "--db",
            str(repo / "core.db.tar.gz"),
            "--evidence",
            str(ev),
            "--packages",
            str(repo),
        ).returncode
        == 0
    )
    audited = cli("enclave", "audit", "--json", str(home))
    assert audited.returncode == 0, audited.stderr
    ok = json.loads(audited.stdout)
    assert ok["ok"] and ok["signatures"] == 1
    # a compromised enclave logs a signature with no evidence behind it
    h = EnclaveHome(home)
    with h.open_log() as log:
        entry = json.loads(log.entry(1))
    import rfc8785

    rogue = [
        {
            "name": "hello",
            "version": "9.9-1",
            "arch": "any",
            "sha256": "e" * 64,
            "filename": "hello-9.9-1-any.pkg.tar.zst",
            "pkgbase": "hello",
            "pkgbuild_sha256": None,
        }
    ]
    blob = rfc8785.dumps(rogue)
    digest = hashlib.sha256(blob).hexdigest()
    h.store_records(blob, digest)
    entry.update(
        job="rogue", parent=entry["db_sha256"], db_sha256="f" * 64, evidence=[], records=digest
    )

    with h.open_log() as log:
        log.append([rfc8785.dumps(entry)])
        h.checkpoint(log, h.key())
    bad = cli("enclave", "audit", "--json", str(home))
    report = json.loads(bad.stdout)
    assert bad.returncode == 3 and not report["ok"]
    assert any("rogue" in v and "builders attest" in v for v in report["violations"])


def test_refresh_stale_parents_and_rebinding(
    tmp_path: Path, setup: tuple[World, Path, Path, Path]
) -> None:
    from reposeal.alpm.synthetic import write_package

    world, home, repo, pkg = setup
    db = repo / "core.db.tar.gz"
    ev = evidence(world, tmp_path / "ev", pkg)
    base = ["--home", str(home), "--repo", "core", "--arch", "x86_64"]
    stale = cli(
        "enclave",
        "sign-db",
        *base,
        "--job-id",
        "s0",
        "--db",
        str(db),
        "--parent",
        "a" * 64,
        "--evidence",
        str(ev),
        "--packages",
        str(repo),
    )
    assert stale.returncode == 3 and "stale or forked" in stale.stdout
    signed = cli(
        "enclave",
        "sign-db",
        *base,
        "--job-id",
        "s1",
        "--db",
        str(db),
        "--parent",
        "none",
        "--evidence",
        str(ev),
        "--packages",
        str(repo),
    )
    assert signed.returncode == 0, signed.stdout
    fork = cli(
        "enclave",
        "sign-db",
        *base,
        "--job-id",
        "s2",
        "--db",
        str(db),
        "--parent",
        "none",
        "--evidence",
        str(ev),
        "--packages",
        str(repo),
    )
    assert fork.returncode == 3 and "stale or forked" in fork.stdout

    refreshed = cli(
        "enclave",
        "refresh",
        *base,
        "--job-id",
        "r1",
        "--db",
        str(db),
        "-o",
        str(tmp_path / "new.sig"),
    )
    assert refreshed.returncode == 0 and (tmp_path / "new.sig").exists()
    retry = cli("enclave", "refresh", *base, "--job-id", "r1", "--db", str(db))
    assert retry.returncode == 0 and json.loads(retry.stdout)["decision"] == "accept"
    other = tmp_path / "other" / "core.db.tar.gz"
    other.parent.mkdir()
    assert (
        cli("db", "add", str(other), str(write_package(other.parent, "zzz", "1-1"))).returncode == 0
    )
    refused = cli("enclave", "refresh", *base, "--job-id", "r2", "--db", str(other))
    assert refused.returncode == 3 and "only the latest" in refused.stdout

    # the same version with other bytes is refused even with evidence for those bytes
    evil_dir = tmp_path / "evil"
    evil_dir.mkdir()
    evil = write_package(evil_dir, "hello", "1.0-1", files={"usr/bin/evil": b"#!/bin/sh\n"})
    evil_db = evil_dir / "core.db.tar.gz"
    assert cli("db", "add", str(evil_db), str(evil)).returncode == 0
    ev_evil = evidence(world, tmp_path / "ev-evil", evil)
    out = cli(
        "enclave",
        "sign-db",
        *base,
        "--job-id",
        "e1",
        "--db",
        str(evil_db),
        "--evidence",
        str(ev_evil),
        "--packages",
        str(evil_dir),
    )
    assert out.returncode == 3 and "another file" in out.stdout
    report = json.loads(cli("enclave", "audit", "--json", str(home)).stdout)
    assert report["ok"] and report["signatures"] == 2 and report["refusals"] == 4


def test_package_signing_jobs(
    tmp_path: Path, setup: tuple[World, Path, Path, Path], built_packages: dict[str, Path]
) -> None:
    world, home, _, pkg = setup
    pkgs = tmp_path / "to-sign"
    pkgs.mkdir()
    shutil.copy2(pkg, pkgs / pkg.name)
    ev = evidence(world, tmp_path / "ev", pkg)
    base = [
        "enclave",
        "sign-packages",
        "--home",
        str(home),
        "--repo",
        "core",
        "--packages",
        str(pkgs),
    ]
    first = cli(*base, "--job-id", "p1", "--evidence", str(ev))
    assert first.returncode == 0, first.stdout + first.stderr
    sig = (pkgs / (pkg.name + ".sig")).read_bytes()
    gnupg = tmp_path / "g"
    gnupg.mkdir(mode=0o700)
    (tmp_path / "enclave.asc").write_text(world.admins[2].cert)
    tools.run(
        ["gpg", "--homedir", str(gnupg), "--batch", "--import", str(tmp_path / "enclave.asc")]
    )
    tools.run(
        [
            "gpg",
            "--homedir",
            str(gnupg),
            "--batch",
            "--verify",
            str(pkgs / (pkg.name + ".sig")),
            str(pkgs / pkg.name),
        ]
    )
    tools.gpg_kill(gnupg)
    retried = json.loads(cli(*base, "--job-id", "p1").stdout)  # a retry: the logged answer
    assert (
        retried["decision"] == "accept"
        and retried["log_index"] == json.loads(first.stdout)["log_index"]
    )
    # the same file in a new job: the same signature, not a second one
    again = json.loads(cli(*base, "--job-id", "p2").stdout)
    assert again["decision"] == "accept"
    import base64

    assert base64.b64decode(again["package_signatures"][pkg.name]) == sig
    # a new version without evidence is refused
    (pkgs / pkg.name).unlink()
    (pkgs / (pkg.name + ".sig")).unlink()
    shutil.copy2(built_packages["hello-1.1"], pkgs / built_packages["hello-1.1"].name)
    refused = cli(*base, "--job-id", "p3")
    assert refused.returncode == 3 and "builders attest" in refused.stdout
    report = json.loads(cli("enclave", "audit", "--json", str(home)).stdout)
    assert report["ok"] and report["signatures"] == 2 and report["refusals"] == 1


def test_enclave_signature_expires_for_pacman_until_refreshed(
    tmp_path: Path, built_packages: dict[str, Path]
) -> None:
    import time

    from reposeal.client.scratch import ScratchPacman

    (tmp_path / "keys").mkdir()
    world = make_world(tmp_path / "keys")
    policy = tmp_path / "policy.json"
    write_signed(policy, world.policy(db_signature_validity_seconds=8).to_bytes(), world.admins[:2])
    home = tmp_path / "enclave"
    assert (
        cli(
            "enclave",
            "init",
            "--home",
            str(home),
            "--signer",
            f"soft:{world.admins[2].signer.path}",
            "--policy",
            str(policy),
        ).returncode
        == 0
    )
    repo = tmp_path / "repo"
    repo.mkdir()
    pkg = repo / built_packages["hello-1.0"].name
    shutil.copy2(built_packages["hello-1.0"], pkg)
    shutil.copy2(built_packages["hello-1.0"], tmp_path / pkg.name)
    db = repo / "core.db.tar.gz"
    assert cli("db", "add", str(db), str(pkg)).returncode == 0
    ev = evidence(world, tmp_path / "ev", pkg)
    base = ["--home", str(home), "--repo", "core", "--arch", "x86_64", "--db", str(db)]
    signed = cli(
        "enclave",
        "sign-db",
        *base,
        "--job-id",
        "x1",
        "--evidence",
        str(ev),
        "--packages",
        str(repo),
        "-o",
        str(repo / "core.db.sig"),
    )
    assert signed.returncode == 0, signed.stdout
    signed_at = time.time()
    cert = tmp_path / "repo.asc"
    cert.write_text(world.admins[2].cert)
    scratch = ScratchPacman(tmp_path / "pacman", {"core": repo})
    scratch.base.mkdir()
    scratch.trust(cert, world.admins[2].fpr)
    scratch.write_conf()
    tools.run_text(scratch.command("-Sy"))
    time.sleep(max(0.0, signed_at + 9.5 - time.time()))
    stale = tools.run_text(scratch.command("-Sy"), check=False)
    assert stale.returncode != 0 and "expired" in stale.stdout + stale.stderr
    refreshed = cli("enclave", "refresh", *base, "--job-id", "x2", "-o", str(repo / "core.db.sig"))
    assert refreshed.returncode == 0, refreshed.stdout
    # the new signature file is newer; pacman downloads it with the unchanged database
    tools.run_text(scratch.command("-Syy"))
    assert "core hello 1.0-1" in tools.run_text(scratch.command("-Sl", "core")).stdout
    tools.gpg_kill(scratch.gpgdir)
