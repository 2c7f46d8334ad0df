"""Issue 19: a repository made by the real repo-add, its packages signed by their packager,
is adopted by the enclave from an admin-signed statement; an approved and built update is
then published on top, and the real pacman installs from it. An adoption signed by fewer
admins than the threshold, naming a file whose bytes differ, or lacking a packager
signature, is refused with the reason and nothing is signed."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from reposeal.client.scratch import ScratchPacman
from tests import tools
from tests.conftest import GpgKey
from tests.e2e.test_enclave_e2e import cli, evidence, init_home, serve, sign_and_add
from tests.policy.world import World, make_world

pytestmark = pytest.mark.e2e


def adopt(
    home: Path, job: str, statement: Path, packages: Path, keyring: Path, out: Path
) -> tuple[int, dict]:
    done = cli(
        "enclave", "adopt", "--home", str(home), "--job-id", job, "--repo", "core", "--arch",
        "x86_64", "--statement", str(statement), "--packages", str(packages), "--keyring",
        str(keyring), "-o", str(out),
    )  # fmt: skip
    try:
        return done.returncode, json.loads(done.stdout)
    except ValueError:
        return done.returncode, {"err": done.stderr}


def repo_add_repository(
    tmp_path: Path, built_packages: dict[str, Path], gpg_key: GpgKey
) -> tuple[Path, Path]:
    """A repository the real repo-add made, each package signed by its packager, and the
    adoption statement `adopt plan` writes for it (not signed yet)."""
    old = tmp_path / "old-repo"
    old.mkdir()
    for key in ("hello-1.0", "world-2.0"):
        pkg = old / built_packages[key].name
        shutil.copy2(built_packages[key], pkg)
        tools.gpg_sign_file(gpg_key.home, gpg_key.fingerprint, pkg)  # the packager's
    packages = sorted(map(str, old.glob("*.pkg.tar.zst")))
    tools.run(["repo-add", "-q", str(old / "core.db.tar.gz"), *packages])
    statement = tmp_path / "adoption.json"
    planned = cli("adopt", "plan", str(old), "--repo", "core", "--arch", "x86_64", "--keyring",
                  str(gpg_key.public), "-o", str(statement))  # fmt: skip
    assert planned.returncode == 0, planned.stderr
    return old, statement


def pacman_trusting(tmp_path: Path, world: World, gpg_key: GpgKey, pool: Path) -> ScratchPacman:
    """A scratch pacman trusting the enclave's key and the packager's."""
    scratch = ScratchPacman(tmp_path / "pacman", {"core": pool})
    scratch.base.mkdir()
    cert = tmp_path / "repo.asc"
    cert.write_text(world.admins[2].cert)
    scratch.trust(cert, world.admins[2].fpr)
    scratch.trust(gpg_key.public, gpg_key.fingerprint)
    scratch.write_conf()
    return scratch


def test_a_repo_add_repository_is_adopted_updated_and_installed(
    tmp_path: Path, built_packages: dict[str, Path], gpg_key: GpgKey
) -> None:
    (tmp_path / "keys").mkdir()
    world = make_world(tmp_path / "keys")
    home = init_home(tmp_path, world)
    old, statement = repo_add_repository(tmp_path, built_packages, gpg_key)
    raw = statement.read_bytes()
    served = tmp_path / "served"

    # one admin's signature: below the threshold of two
    statement.with_name("adoption.json.sig").write_bytes(world.admins[0].sign(raw))
    code, one = adopt(home, "a1", statement, old, gpg_key.public, served)
    assert code == 3 and any("signed by 1 admins" in r for r in one["reasons"]), one
    statement.with_name("adoption.json.sig").write_bytes(
        b"".join(p.sign(raw) for p in world.admins[:2])
    )
    # a file whose bytes are not the ones the admins signed
    tampered = tmp_path / "tampered"
    shutil.copytree(old, tampered)
    hello = next(tampered.glob("hello-*.pkg.tar.zst"))
    shutil.copy2(built_packages["hello-1.1"], hello)
    code, other = adopt(home, "a2", statement, tampered, gpg_key.public, served)
    assert code == 3 and any("is not the" in r for r in other["reasons"]), other
    # a packager signature missing
    unsigned = tmp_path / "unsigned"
    shutil.copytree(old, unsigned)
    next(unsigned.glob("world-*.pkg.tar.zst.sig")).unlink()
    code, bare = adopt(home, "a3", statement, unsigned, gpg_key.public, served)
    assert code == 3 and any("no valid packager signature" in r for r in bare["reasons"]), bare
    assert not served.exists(), "nothing was signed"

    code, adopted = adopt(home, "a4", statement, old, gpg_key.public, served)
    assert (code, adopted["decision"]) == (0, "accept"), adopted
    for f in old.glob("*.pkg.tar.zst*"):
        shutil.copy2(f, served / f.name)
    code, again = adopt(home, "a5", statement, old, gpg_key.public, tmp_path / "again")
    assert code == 3 and any("has a signed database already" in r for r in again["reasons"]), again

    scratch = pacman_trusting(tmp_path, world, gpg_key, served)
    tools.run_text(scratch.command("-Sy"))
    tools.run_text(scratch.command("-S", "--noconfirm", "hello"))
    assert "hello 1.0-1" in tools.run_text(scratch.command("-Q", "hello")).stdout

    # from the adopted state on, the usual evidence: an approved, built 1.1 is published
    pkg = tmp_path / "incoming" / built_packages["hello-1.1"].name
    pkg.parent.mkdir()
    shutil.copy2(built_packages["hello-1.1"], pkg)
    ev = evidence(world, tmp_path / "ev", pkg, which="hello-1.1")
    code, receipt = sign_and_add(home, pkg, ev, "u1", served)
    assert (code, receipt["decision"]) == (0, "accept"), receipt
    serve(pkg, "p-u1", served)
    tools.run_text(scratch.command("-Syu", "--noconfirm"))
    assert "hello 1.1-1" in tools.run_text(scratch.command("-Q", "hello")).stdout
    assert "world 2.0-1" in tools.run_text(scratch.command("-Sl", "core")).stdout
    tools.gpg_kill(scratch.gpgdir)
    audit = json.loads(cli("enclave", "audit", "--json", str(home)).stdout)
    assert audit["ok"], audit
    (adopted,) = audit["adoptions"]  # who adopted what, for the provenance pages
    assert adopted["packages"] == ["hello 1.0-1", "world 2.0-1"], adopted
    assert adopted["admins"] == sorted(p.fpr for p in world.admins[:2]), adopted
    pages = tmp_path / "pages"
    made = cli("enclave", "provenance", str(home), "-o", str(pages))
    assert made.returncode == 0, made.stderr
    page = (pages / "index.html").read_text()
    assert "adopted" in page and "admin0 &lt;admin0@example.org&gt;" in page, page[:2000]
    assert "hello 1.1-1" in page and "maint0 &lt;maint0@example.org&gt;" in page
    assert "builder1 &lt;builder1@example.org&gt;" in page


def test_adopt_plan_lists_every_problem_and_writes_nothing(
    tmp_path: Path, built_packages: dict[str, Path], gpg_key: GpgKey
) -> None:
    old = tmp_path / "old"
    old.mkdir()
    for key in ("hello-1.0", "world-2.0"):
        shutil.copy2(built_packages[key], old / built_packages[key].name)
    tools.run(
        [
            "repo-add",
            "-q",
            str(old / "core.db.tar.gz"),
            *map(str, sorted(old.glob("*.pkg.tar.zst"))),
        ]
    )
    next(old.glob("world-*.pkg.tar.zst")).unlink()
    out = tmp_path / "adoption.json"
    planned = cli("adopt", "plan", str(old), "--repo", "core", "--arch", "x86_64", "--keyring",
                  str(gpg_key.public), "-o", str(out))  # fmt: skip
    assert planned.returncode != 0 and not out.exists()
    assert "is not in" in planned.stderr and "no packager signature" in planned.stderr, (
        planned.stderr
    )
    subprocess.run(["true"], check=True)


def test_the_repo_machine_adopts_through_the_bridge_then_publishes_updates(
    tmp_path: Path, world: World, built_packages: dict[str, Path], gpg_key: GpgKey
) -> None:
    """`repo adopt`: the adoption goes to `enclave run` as an adopt job of its own update
    cycle, is published on the mirror with the packagers' signatures beside the files, and
    the approved, built 1.1 then goes through the usual cycle on top of it."""
    from tests.e2e.test_repo_cycle_e2e import cycle, init_enclave, run_enclave, send
    from tests.e2e.test_repo_intake_e2e import start_service

    service = start_service(tmp_path, world)
    svc = next(service)
    try:
        home = init_enclave(tmp_path, world)
        old, statement = repo_add_repository(tmp_path, built_packages, gpg_key)
        raw = statement.read_bytes()
        statement.with_name("adoption.json.sig").write_bytes(
            b"".join(p.sign(raw) for p in world.admins[:2])
        )
        mirror = tmp_path / "mirror"
        machine = ["--dir", str(tmp_path / "srv"), "--mirror", str(mirror), "--policy",
                   str(tmp_path / "policy.json")]  # fmt: skip
        asked = cli("repo", "adopt", "--statement", str(statement), "--packages", str(old),
                    "--keyring", str(gpg_key.public), *machine, "--json")  # fmt: skip
        assert asked.returncode == 0, asked.stderr
        assert json.loads(asked.stdout)["cycles"][0]["step"] == "propose", asked.stdout
        run_enclave(svc, home)  # the adopt job
        (done,) = cycle(tmp_path)
        assert done["step"] == "done", done
        pool = mirror / "core" / "os" / "x86_64"
        assert (pool / f"{built_packages['world-2.0'].name}.sig").exists(), "the packager's"
        again = cli("repo", "adopt", "--statement", str(statement), "--packages", str(old),
                    "--keyring", str(gpg_key.public), *machine)  # fmt: skip
        assert again.returncode != 0 and "published already" in again.stderr, again.stderr

        scratch = pacman_trusting(tmp_path, world, gpg_key, pool)
        tools.run_text(scratch.command("-Sy"))
        tools.run_text(scratch.command("-S", "--noconfirm", "world"))  # and hello, its dependency
        assert "hello 1.0-1" in tools.run_text(scratch.command("-Q", "hello")).stdout

        send(world, svc, built_packages["hello-1.1"], tools.PKGBUILDS["hello-1.1"], approvers=2)
        cycle(tmp_path)
        run_enclave(svc, home)  # its package signed
        cycle(tmp_path)
        run_enclave(svc, home)  # the transition
        (done,) = cycle(tmp_path)
        assert done["step"] == "done", done
        tools.run_text(scratch.command("-Syu", "--noconfirm"))
        assert "hello 1.1-1" in tools.run_text(scratch.command("-Q", "hello")).stdout, done
        tools.gpg_kill(scratch.gpgdir)
        audit = json.loads(cli("enclave", "audit", "--json", str(home)).stdout)
        assert audit["ok"], audit
    finally:
        service.close()
