"""The keyring package with the real makepkg, pacman and pacman-key: installed and populated,
it makes pacman trust the repository's current and next keys; after a rotation its next
version revokes the old key, and pacman refuses a database the old key signed.

Debian's pacman-key populates from /usr/share/keyrings (a Debian patch); Arch's, which the
package targets, from /usr/share/pacman/keyrings. The test runs the real pacman-key with
that one path pointed at the scratch root's keyrings folder. The install script (which runs
`pacman-key --populate`) cannot run in a scratch root without a shell, so the test installs
with --noscriptlet and runs the populate step itself, as the script would."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from reposeal.alpm.synthetic import write_package
from reposeal.client.scratch import ScratchPacman
from tests import tools
from tests.e2e.test_repo_cycle_e2e import cli
from tests.e2e.test_repo_intake_e2e import world  # noqa: F401
from tests.policy.world import World

pytestmark = pytest.mark.e2e


def key(tmp: Path, name: str) -> tuple[str, Path]:
    """A repository key: (signer spec, its public certificate file)."""
    spec = f"soft:{tmp / f'{name}.key'}"
    assert (
        cli("key", "generate", "--signer", spec, "--uid", f"{name} <{name}@x.org>").returncode == 0
    )
    cert = tmp / f"{name}.asc"
    cert.write_text(cli("key", "export", "--signer", spec).stdout)
    return spec, cert


def policy(tmp: Path, world: World, version: int, **keys: Path) -> Path:  # noqa: F811
    rings = {}
    for role, people in (("admins", world.admins), ("maintainers", world.maintainers),
                         ("builders", world.builders)):  # fmt: skip
        rings[role] = tmp / f"{role}.asc"
        rings[role].write_text("".join(p.cert for p in people))
    path = tmp / f"policy-v{version}.json"
    args = [f"--{k.replace('_', '-')}={v}" for k, v in keys.items()]
    made = cli(
        "policy", "init", "-o", str(path), "--admins", str(rings["admins"]),
        "--maintainers", str(rings["maintainers"]), "--builders", str(rings["builders"]),
        "--admin-threshold", "2", "--approvals", "2", "--builds", "2", "--repo", "core:x86_64",
        "--version", str(version), *args,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    for admin in world.admins[:2]:
        assert (
            cli("policy", "sign", "--signer", f"soft:{admin.signer.path}", str(path)).returncode
            == 0
        )
    return path


def populate(scratch: ScratchPacman, name: str, tmp: Path) -> None:
    """The real pacman-key --populate, reading the keyrings the package installed."""
    script = Path(shutil.which("pacman-key") or "/usr/bin/pacman-key").read_text()
    keyrings = scratch.root / "usr/share/pacman/keyrings"
    patched = re.sub(
        r"KEYRING_IMPORT_DIR=['\"]?[^'\"\n]*['\"]?", f"KEYRING_IMPORT_DIR='{keyrings}'", script
    )
    assert patched != script
    (tmp / "pacman-key").write_text(patched)
    tools.run(
        ["bash", str(tmp / "pacman-key"), "--gpgdir", str(scratch.gpgdir), "--populate", name]
    )


def signed_repo(pool: Path, spec: str) -> None:
    """A repository whose database ``spec`` signed."""
    if pool.exists():
        shutil.rmtree(pool)
    pool.mkdir(parents=True)
    pkg = write_package(pool, "hello", "1.0-1")
    assert (
        cli("db", "add", "-q", "--signer", spec, str(pool / "core.db.tar.gz"), str(pkg)).returncode
        == 0
    )


def test_keyring_package_trusts_rotates_and_revokes(tmp_path: Path, world: World) -> None:  # noqa: F811
    old, old_cert = key(tmp_path, "old")
    new, new_cert = key(tmp_path, "new")
    v1 = policy(tmp_path, world, 1, repository_key=old_cert, next_repository_key=new_cert)
    out = cli("keyring", "build", "--name", "demo", "--policy", str(v1), "-o", str(tmp_path / "k1"),
              "--package", str(tmp_path / "pkgs"))  # fmt: skip
    assert out.returncode == 0, out.stderr
    (package,) = (tmp_path / "pkgs").glob("demo-keyring-1-1-any.pkg.tar.*")
    trusted = (tmp_path / "k1" / "demo-trusted").read_text()
    assert trusted.count(":4:") == 2 and (tmp_path / "k1" / "demo-revoked").read_text() == ""

    pool = tmp_path / "repo"
    scratch = ScratchPacman(tmp_path / "pacman", {"core": pool})
    scratch.base.mkdir()
    scratch.write_conf("Required DatabaseRequired")
    tools.run(["pacman-key", "--gpgdir", str(scratch.gpgdir), "--init"])
    tools.run(scratch.command("-U", "--noscriptlet", str(package)))
    populate(scratch, "demo", tmp_path)
    signed_repo(pool, new)  # the next key signs: trusted during the overlap
    tools.run_text(scratch.command("-Sy"))
    signed_repo(pool, old)  # and the current one still is
    tools.run_text(scratch.command("-Syy"))

    # the rotation is over: policy v2 revokes the old key; its keyring package, version 2
    v2 = policy(tmp_path, world, 2, repository_key=new_cert, revoked_repository_key=old_cert)
    out = cli("keyring", "build", "--name", "demo", "--policy", str(v2), "-o", str(tmp_path / "k2"),
              "--package", str(tmp_path / "pkgs"))  # fmt: skip
    assert out.returncode == 0, out.stderr
    (upgrade,) = (tmp_path / "pkgs").glob("demo-keyring-2-1-any.pkg.tar.*")
    tools.run(scratch.command("-U", "--noscriptlet", str(upgrade)))
    populate(scratch, "demo", tmp_path)
    refused = subprocess.run(scratch.command("-Syy"), capture_output=True, text=True)
    assert refused.returncode != 0, refused.stdout
    assert "is disabled" in refused.stderr and "core" in refused.stderr, refused.stderr
    signed_repo(pool, new)
    tools.run_text(scratch.command("-Syy"))
    tools.gpg_kill(scratch.gpgdir)


def test_the_keyring_package_goes_through_the_pipeline(tmp_path: Path, world: World) -> None:  # noqa: F811
    """The keyring is published like any package: committed, approved twice, built by two
    builders, signed by the enclave; pacman installs it, and populating trusts the key."""
    from tests.e2e.test_pipeline_e2e import git, running_pipeline, wait_published
    from tests.e2e.test_repo_cycle_e2e import pacman_trusting_the_enclave

    doc = world.policy(repository_keys={"current": [world.admins[2].cert]}).to_bytes()
    with running_pipeline(tmp_path, world, doc) as p:
        source = tmp_path / "git" / "demo-keyring"
        out = cli("keyring", "build", "--name", "demo", "--policy", str(tmp_path / "policy.json"),
                  "-o", str(source))  # fmt: skip
        assert out.returncode == 0, out.stderr
        git(source, "init", "-q", "-b", "main")
        git(source, "add", ".")
        git(source, "commit", "-q", "-m", "demo-keyring 1")
        commit = git(source, "rev-parse", "HEAD")
        p.proposal(commit)
        for who in (0, 1):
            assert p.approve(who, commit, pkgbase="demo-keyring").returncode == 0
        for who in (0, 1):
            built = p.build(who)
            assert built.returncode == 0 and "built 1 job" in built.stdout, built.stderr
        wait_published(p, "1", "demo-keyring")
    scratch = pacman_trusting_the_enclave(tmp_path, world, tmp_path / "mirror/core/os/x86_64")
    tools.run_text(scratch.command("-Sy"))
    tools.run_text(scratch.command("-S", "--noscriptlet", "demo-keyring"))
    assert (scratch.root / "usr/share/pacman/keyrings/demo.gpg").exists()
    populate(scratch, "demo", tmp_path)
    listed = tools.run_text(["pacman-key", "--gpgdir", str(scratch.gpgdir), "--list-keys"]).stdout
    assert world.admins[2].fpr.upper() in listed.replace(" ", "").upper()
    tools.gpg_kill(scratch.gpgdir)
