"""The enclave's home and its sandboxed worker (real bubblewrap) on real makepkg packages:
transitions the enclave writes itself, read by the real pacman."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from reposeal.evidence.statements import Approval, Build, Removal, to_bytes
from tests import tools
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


def init_home(tmp_path: Path, world: World, **policy: object) -> Path:
    doc = tmp_path / "policy.json"
    write_signed(doc, world.policy(**policy).to_bytes(), world.admins[:2])
    home = tmp_path / "enclave"
    out = cli(
        "enclave",
        "init",
        "--home",
        str(home),
        "--signer",
        f"soft:{world.admins[2].signer.path}",
        "--policy",
        str(doc),
        "--origin",
        "test.example/log",
    )
    assert out.returncode == 0, out.stderr
    return home


@pytest.fixture
def setup(tmp_path: Path, built_packages: dict[str, Path]) -> tuple[World, Path, Path, Path]:
    (tmp_path / "keys").mkdir()
    world = make_world(tmp_path / "keys")
    home = init_home(tmp_path, world)
    repo = tmp_path / "incoming"
    repo.mkdir()
    pkg = repo / built_packages["hello-1.0"].name
    shutil.copy2(built_packages["hello-1.0"], pkg)
    return world, home, repo, pkg


def evidence(
    world: World,
    folder: Path,
    pkg: Path,
    approvers: int = 2,
    builders: int = 2,
    which: str = "hello-1.0",
    commit: str = COMMIT,
) -> Path:
    folder.mkdir(exist_ok=True)
    pkgbuild = tools.pkgbuild(*tools.PKGBUILDS[which]).encode()
    sha = hashlib.sha256(pkg.read_bytes()).hexdigest()
    approval = to_bytes(Approval("core", "hello", commit, hashlib.sha256(pkgbuild).hexdigest()))
    write_signed(folder / f"approval-{sha[:8]}.json", approval, world.maintainers[:approvers])
    build = to_bytes(Build("hello", commit, pkg.name, sha, "0" * 64))
    write_signed(folder / f"build-{sha[:8]}.json", build, world.builders[:builders])
    return folder


def sign_package(home: Path, pkg: Path, ev: Path, job: str) -> subprocess.CompletedProcess[str]:
    folder = pkg.parent / f"to-sign-{job}"
    folder.mkdir()
    shutil.copy2(pkg, folder / pkg.name)
    return cli(
        "enclave", "sign-packages", "--home", str(home), "--job-id", job, "--repo", "core",
        "--packages", str(folder), "--evidence", str(ev),
    )  # fmt: skip


def serve(pkg: Path, job: str, served: Path) -> None:
    """Put a package and the enclave's signature of it (from ``sign_package``) on a mirror."""
    shutil.copy2(pkg, served / pkg.name)
    shutil.copy2(pkg.parent / f"to-sign-{job}" / f"{pkg.name}.sig", served / f"{pkg.name}.sig")


def propose(home: Path, job: str, out: Path, *args: str) -> tuple[int, dict]:
    result = cli(
        "enclave", "propose", "--home", str(home), "--job-id", job, "--repo", "core",
        "--arch", "x86_64", "-o", str(out), *args,
    )  # fmt: skip
    try:
        return result.returncode, json.loads(result.stdout)
    except ValueError:
        return result.returncode, {"err": result.stderr}


def sign_and_add(home: Path, pkg: Path, ev: Path, job: str, out: Path) -> tuple[int, dict]:
    """The package signed by the enclave (job ``p-JOB``), then added (job ``JOB``)."""
    signed = sign_package(home, pkg, ev, f"p-{job}")
    assert signed.returncode == 0, signed.stdout + signed.stderr
    return propose(home, job, out, "--add", str(pkg), "--evidence", str(ev))


def scratch_pacman(tmp_path: Path, world: World, served: Path):  # type: ignore[no-untyped-def]
    from reposeal.client.scratch import ScratchPacman

    cert = tmp_path / "repo.asc"
    cert.write_text(world.admins[2].cert)
    scratch = ScratchPacman(tmp_path / "pacman", {"core": served})
    scratch.base.mkdir()
    scratch.trust(cert, world.admins[2].fpr)
    scratch.write_conf()
    return scratch


def test_the_enclave_writes_the_databases_and_pacman_installs_from_them(
    tmp_path: Path, setup: tuple[World, Path, Path, Path], built_packages: dict[str, Path]
) -> None:
    import pysequoia

    world, home, incoming, pkg = setup
    ev = evidence(world, tmp_path / "ev", pkg)
    served = tmp_path / "served"
    # a package file the enclave has not signed is not listed
    code, unsigned = propose(home, "t0", served, "--add", str(pkg), "--evidence", str(ev))
    assert code == 3 and any("has not signed this package" in r for r in unsigned["reasons"])
    signed = sign_package(home, pkg, ev, "p1")
    assert signed.returncode == 0, signed.stdout + signed.stderr
    code, receipt = propose(home, "t1", served, "--add", str(pkg), "--evidence", str(ev))
    assert (code, receipt["decision"]) == (0, "accept"), receipt
    sig = pysequoia.Sig.from_bytes((served / "core.db.tar.gz.sig").read_bytes())
    assert sig.expiration is not None and sig.created is not None
    assert round((sig.expiration - sig.created).total_seconds()) == 7 * 86400
    # a retry of the same job gets the logged answer, not a second signature
    code, again = propose(home, "t1", served, "--add", str(pkg), "--evidence", str(ev))
    assert code == 0 and again["signature"] == receipt["signature"]
    # the same job id for another request is refused, and nothing is logged
    code, other = propose(home, "t1", served, "--remove", "hello")
    assert code != 0 and "another request" in json.dumps(other)

    # the real pacman (signatures required on databases and packages) installs it
    serve(pkg, "p1", served)
    scratch = scratch_pacman(tmp_path, world, served)
    tools.run_text(scratch.command("-Sy"))
    tools.run_text(scratch.command("-S", "--noconfirm", "hello"))
    assert (scratch.base / "root/usr/share/hello/message").exists()
    assert "core hello 1.0-1" in tools.run_text(scratch.command("-Sl", "core")).stdout
    tools.run_text(scratch.command("-Fy"))
    assert "usr/share/hello/message" in tools.run_text(scratch.command("-Fl", "hello")).stdout

    # an upgrade with its evidence goes through; the old file again is refused
    new = incoming / built_packages["hello-1.1"].name
    shutil.copy2(built_packages["hello-1.1"], new)
    ev11 = evidence(world, tmp_path / "ev11", new, which="hello-1.1", commit="d" * 40)
    assert sign_package(home, new, ev11, "p2").returncode == 0
    code, up = propose(home, "t2", served, "--add", str(new), "--evidence", str(ev11))
    assert code == 0, up
    assert up["databases"]["replaced"] == [pkg.name]
    code, back = propose(home, "t3", served, "--add", str(pkg), "--evidence", str(ev))
    assert code == 3 and any("older than 1.1-1" in r for r in back["reasons"])
    serve(new, "p2", served)
    tools.run_text(scratch.command("-Syu", "--noconfirm"))
    assert "hello 1.1-1" in tools.run_text(scratch.command("-Q", "hello")).stdout
    tools.gpg_kill(scratch.gpgdir)
    report = json.loads(cli("enclave", "audit", "--json", str(home)).stdout)
    assert report["ok"], report
    assert report["signatures"] == 4 and report["refusals"] == 2


def test_removals_name_their_version_and_are_used_once(
    tmp_path: Path, setup: tuple[World, Path, Path, Path]
) -> None:
    world, home, _, pkg = setup
    ev = evidence(world, tmp_path / "ev", pkg)
    out = tmp_path / "out"
    code, first = sign_and_add(home, pkg, ev, "t1", out)
    assert code == 0, first
    rm = tmp_path / "rm"
    rm.mkdir()
    # a removal approved for another version removes nothing
    write_signed(
        rm / "r.json", to_bytes(Removal("core", (("hello", "0.9-1"),))), world.maintainers[:2]
    )
    code, wrong = propose(home, "t2", out, "--remove", "hello", "--evidence", str(rm))
    assert code == 3 and any("naming this version" in r for r in wrong["reasons"])
    write_signed(
        rm / "r.json", to_bytes(Removal("core", (("hello", "1.0-1"),))), world.maintainers[:2]
    )
    code, gone = propose(home, "t3", out, "--remove", "hello", "--evidence", str(rm))
    assert code == 0, gone
    # the removed package comes back only with new approvals (the old ones are spent)
    code, back = propose(home, "t4", out, "--add", str(pkg), "--evidence", str(ev))
    assert code == 3 and any("spent by a removal" in r for r in back["reasons"])
    fresh = tmp_path / "fresh"
    evidence(world, fresh, pkg, commit="e" * 40)
    code, readded = propose(home, "t5", out, "--add", str(pkg), "--evidence", str(fresh))
    assert code == 0, readded
    # the same removal statement again removes nothing: it was used
    code, again = propose(home, "t6", out, "--remove", "hello", "--evidence", str(rm))
    assert code == 3 and any("used once" in r for r in again["reasons"])
    # three databases signed; the enclave keeps the latest and its parent, not all of them
    assert len(list((home / "dbs").iterdir())) <= 6  # (t5 wrote t1's very bytes again)
    report = json.loads(cli("enclave", "audit", "--json", str(home)).stdout)
    assert report["ok"], report


def test_dry_run_explains_and_stale_parents_are_refused(
    tmp_path: Path, setup: tuple[World, Path, Path, Path]
) -> None:
    world, home, _, pkg = setup
    base = ["--home", str(home), "--repo", "core", "--arch", "x86_64", "--add", str(pkg)]
    ev = evidence(world, tmp_path / "ev", pkg)
    assert sign_package(home, pkg, ev, "p1").returncode == 0
    ok = cli("enclave", "dry-run", *base, "--evidence", str(ev))
    assert ok.returncode == 0 and json.loads(ok.stdout)["decision"] == "accept"
    weak = evidence(world, tmp_path / "weak", pkg, approvers=1, builders=1)
    (weak / f"approval-{hashlib.sha256(pkg.read_bytes()).hexdigest()[:8]}.json").unlink()
    no = cli("enclave", "dry-run", *base, "--evidence", str(weak))
    assert no.returncode == 3 and "1 builders attest" in no.stdout
    out = tmp_path / "out"
    code, stale = propose(home, "s0", out, "--add", str(pkg), "--evidence", str(ev),
                          "--parent", "a" * 64)  # fmt: skip
    assert code == 3 and any("stale or forked" in r for r in stale["reasons"])
    code, first = propose(home, "s1", out, "--add", str(pkg), "--evidence", str(ev),
                          "--parent", "none")  # fmt: skip
    assert code == 0, first
    code, fork = propose(home, "s2", out, "--remove", "hello", "--parent", "none")
    assert code == 3 and any("stale or forked" in r for r in fork["reasons"])
    status = json.loads(cli("enclave", "status", "--json", "--home", str(home)).stdout)
    assert status["log_size"] == 5  # genesis, packages, two refusals, one database


def test_refresh_resigns_the_enclaves_own_latest_bytes(
    tmp_path: Path, setup: tuple[World, Path, Path, Path]
) -> None:
    world, home, _, pkg = setup
    ev = evidence(world, tmp_path / "ev", pkg)
    out = tmp_path / "out"
    code, first = sign_and_add(home, pkg, ev, "t1", out)
    assert code == 0, first
    db_sha = first["databases"]["db_sha256"]
    base = ["enclave", "refresh", "--home", str(home), "--repo", "core", "--arch", "x86_64"]
    fresh = tmp_path / "fresh"
    refreshed = cli(*base, "--job-id", "r1", "--expect", db_sha, "-o", str(fresh))
    assert refreshed.returncode == 0, refreshed.stdout + refreshed.stderr
    assert (fresh / "core.db.tar.gz.sig").read_bytes() != (out / "core.db.tar.gz.sig").read_bytes()
    refused = cli(*base, "--job-id", "r2", "--expect", "b" * 64, "-o", str(fresh))
    assert refused.returncode == 3 and "only the latest" in refused.stdout


def test_package_signing_jobs(
    tmp_path: Path, setup: tuple[World, Path, Path, Path], built_packages: dict[str, Path]
) -> None:
    world, home, _, pkg = setup
    pkgs = tmp_path / "to-sign"
    pkgs.mkdir()
    shutil.copy2(pkg, pkgs / pkg.name)
    ev = evidence(world, tmp_path / "ev", pkg)
    base = ["enclave", "sign-packages", "--home", str(home), "--repo", "core",
            "--packages", str(pkgs)]  # fmt: skip
    first = cli(*base, "--job-id", "p1", "--evidence", str(ev))
    assert first.returncode == 0, first.stdout + first.stderr
    sig = (pkgs / (pkg.name + ".sig")).read_bytes()
    gnupg = tmp_path / "g"
    gnupg.mkdir(mode=0o700)
    (tmp_path / "enclave.asc").write_text(world.admins[2].cert)
    tools.run(
        ["gpg", "--homedir", str(gnupg), "--batch", "--import", str(tmp_path / "enclave.asc")]
    )
    tools.run(["gpg", "--homedir", str(gnupg), "--batch", "--verify",
               str(pkgs / (pkg.name + ".sig")), str(pkgs / pkg.name)])  # fmt: skip
    tools.gpg_kill(gnupg)
    (pkgs / (pkg.name + ".sig")).unlink()
    # the same file in a new job: the same signature, not a second one
    again = json.loads(cli(*base, "--job-id", "p2").stdout)
    assert again["decision"] == "accept"
    assert base64.b64decode(again["package_signatures"][pkg.name]) == sig
    # a new version without evidence is refused
    (pkgs / pkg.name).unlink()
    shutil.copy2(built_packages["hello-1.1"], pkgs / built_packages["hello-1.1"].name)
    refused = cli(*base, "--job-id", "p3")
    assert refused.returncode == 3 and "builders attest" in refused.stdout
    report = json.loads(cli("enclave", "audit", "--json", str(home)).stdout)
    assert report["ok"] and report["signatures"] == 2 and report["refusals"] == 1


def test_tampered_log_stops_the_enclave(setup: tuple[World, Path, Path, Path]) -> None:
    import sqlite3

    _, home, _, _ = setup
    db = sqlite3.connect(home / "log.sqlite")
    db.execute("UPDATE entry SET data = ? WHERE idx = 0", (b'{"type":"genesis"}',))
    db.commit()
    db.close()
    out = cli("enclave", "status", "--home", str(home))
    assert out.returncode != 0 and "does not verify" in out.stderr


def test_the_enclave_signature_expires_for_pacman_until_refreshed(
    tmp_path: Path, built_packages: dict[str, Path]
) -> None:
    (tmp_path / "keys").mkdir()
    world = make_world(tmp_path / "keys")
    home = init_home(tmp_path, world, db_signature_validity_seconds=3600)
    pkg = tmp_path / built_packages["hello-1.0"].name
    shutil.copy2(built_packages["hello-1.0"], pkg)
    ev = evidence(world, tmp_path / "ev", pkg)
    served = tmp_path / "served"
    code, first = sign_and_add(home, pkg, ev, "x1", served)
    assert code == 0, first
    serve(pkg, "p-x1", served)
    scratch = scratch_pacman(tmp_path, world, served)
    tools.run_text(scratch.command("-Sy"))
    # two hours on, for pacman and gpg: the signature has expired (no waiting for it)
    later = ["faketime", "-f", "+2h"]
    stale = tools.run_text([*later, *scratch.command("-Syy")], check=False)
    assert stale.returncode != 0 and "expired" in stale.stdout + stale.stderr
    refreshed = cli("enclave", "refresh", "--home", str(home), "--repo", "core",
                    "--arch", "x86_64", "--job-id", "x2", "-o", str(served))  # fmt: skip
    assert refreshed.returncode == 0, refreshed.stdout
    tools.run_text(scratch.command("-Syy"))
    assert "core hello 1.0-1" in tools.run_text(scratch.command("-Sl", "core")).stdout
    tools.gpg_kill(scratch.gpgdir)


def test_a_tampered_record_file_stops_the_enclave_with_a_message(
    tmp_path: Path, setup: tuple[World, Path, Path, Path]
) -> None:
    world, home, _, pkg = setup
    assert sign_package(home, pkg, evidence(world, tmp_path / "ev", pkg), "p1").returncode == 0
    for record in (home / "records").iterdir():
        record.write_bytes(record.read_bytes() + b" ")
    out = cli("enclave", "status", "--home", str(home))
    assert out.returncode == 1 and "do not match their hash" in out.stderr
    assert "Traceback" not in out.stderr
