"""Rotating the enclave's repository key for real: the policy names the next key; `enclave
signer` switches to it (a log entry), later databases are signed by it, audit passes; a key
the policy does not name is refused, and once a newer policy revokes the old key, the old
key signs nothing even if someone configures it again."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pysequoia
import pytest

from reposeal.openpgp.verify import Keyring, verify_detached
from tests import tools
from tests.e2e.test_enclave_e2e import cli, evidence, sign_and_add, write_signed
from tests.policy.world import World, make_world

pytestmark = pytest.mark.e2e


def new_key(tmp: Path, name: str) -> tuple[str, str]:
    tsk = pysequoia.Tsk.generate(f"{name} <{name}@x.org>", profile=pysequoia.Profile.RFC4880)
    (tmp / f"{name}.key").write_text(str(tsk))
    return f"soft:{tmp / f'{name}.key'}", str(tsk.extract_certificate())


def add(home: Path, pkg: Path, ev: Path, job: str, out: Path) -> bytes:
    """Sign the package and add it; the new sync database's signature."""
    code, answer = sign_and_add(home, pkg, ev, job, out)
    assert code == 0, answer
    return (out / "core.db.tar.gz.sig").read_bytes()


def test_the_enclave_rotates_to_the_next_key_and_never_back(
    tmp_path: Path, built_packages: dict[str, Path]
) -> None:
    (tmp_path / "keys").mkdir()
    world: World = make_world(tmp_path / "keys")
    old_cert = world.admins[2].cert
    new_spec, new_cert = new_key(tmp_path, "next")
    other_spec, _ = new_key(tmp_path, "other")
    keys = {"current": [old_cert], "next": [new_cert]}
    policy = tmp_path / "policy.json"
    write_signed(policy, world.policy(repository_keys=keys).to_bytes(), world.admins[:2])
    shutil.copy(world.admins[2].signer.path, tmp_path / "repo.key")
    home = tmp_path / "enclave"
    made = cli("enclave", "init", "--home", str(home), "--signer", f"soft:{tmp_path / 'repo.key'}",
               "--policy", str(policy), "--origin", "test.example/log")  # fmt: skip
    assert made.returncode == 0, made.stderr

    repo = tmp_path / "repo"
    repo.mkdir()
    for spec in ("hello-1.0", "world-2.0"):
        shutil.copy2(built_packages[spec], repo / built_packages[spec].name)
    hello = repo / built_packages["hello-1.0"].name
    out = tmp_path / "out"
    first = add(home, hello, evidence(world, tmp_path / "ev1", hello), "job-1", out)
    old_ring = Keyring.from_bytes(old_cert.encode())
    assert verify_detached((out / "core.db.tar.gz").read_bytes(), first, old_ring)

    # a policy that does not name the key the enclave signs with is not taken
    orphan = tmp_path / "policy-orphan.json"
    only_new = world.policy(version=2, repository_keys={"current": [new_cert]}).to_bytes()
    write_signed(orphan, only_new, world.admins[:2])
    taken = cli("enclave", "policy", "--home", str(home), str(orphan))
    assert taken.returncode != 0 and "switch keys first" in taken.stdout + taken.stderr
    refused = cli("enclave", "signer", "--home", str(home), "--signer", other_spec)
    assert refused.returncode != 0 and "does not name key" in refused.stderr, refused.stderr
    switched = cli("enclave", "signer", "--home", str(home), "--signer", new_spec)
    assert switched.returncode == 0, switched.stderr

    world_pkg = repo / built_packages["world-2.0"].name
    ev2 = tmp_path / "ev2"
    ev2.mkdir()
    _world_evidence(world, ev2, world_pkg)
    second = add(home, world_pkg, ev2, "job-2", out)
    new_ring = Keyring.from_bytes(new_cert.encode())
    assert verify_detached((out / "core.db.tar.gz").read_bytes(), second, new_ring)
    audit = json.loads(cli("enclave", "audit", "--json", str(home)).stdout)
    assert audit["ok"] and audit["key_rotations"] == 1 and audit["signatures"] == 4, audit

    # policy v2 revokes the old key; configuring it again gets nothing signed
    revoked = {"current": [new_cert], "revoked": [old_cert]}
    hasty = tmp_path / "policy-hasty.json"  # the new key has signed for seconds, not an hour
    doc = world.policy(version=2, repository_keys=revoked, key_overlap_seconds=3600).to_bytes()
    write_signed(hasty, doc, world.admins[:2])
    taken = cli("enclave", "policy", "--home", str(home), str(hasty))
    assert taken.returncode != 0 and "stopped signing" in taken.stdout + taken.stderr
    v2 = tmp_path / "policy-v2.json"
    write_signed(v2, world.policy(version=3, repository_keys=revoked).to_bytes(), world.admins[:2])
    assert cli("enclave", "policy", "--home", str(home), str(v2)).returncode == 0
    back = cli(
        "enclave", "signer", "--home", str(home), "--signer", f"soft:{tmp_path / 'repo.key'}"
    )
    assert back.returncode != 0 and "does not name key" in back.stderr
    config = json.loads((home / "config.json").read_text())
    (home / "config.json").write_text(
        json.dumps(config | {"signer": f"soft:{tmp_path / 'repo.key'}"})
    )
    status = cli("enclave", "refresh", "--home", str(home), "--repo", "core", "--arch", "x86_64",
                 "-o", str(out), "--job-id", "refresh-1")  # fmt: skip
    assert status.returncode != 0 and "not the one the log names" in status.stdout, status.stdout
    tools.gpg_kill(tmp_path)


def _world_evidence(world: World, folder: Path, pkg: Path) -> None:
    import hashlib

    from reposeal.evidence.statements import Approval, Build, to_bytes

    pkgbuild = tools.pkgbuild(*tools.PKGBUILDS["world-2.0"]).encode()
    commit = "c" * 40
    sha = hashlib.sha256(pkg.read_bytes()).hexdigest()
    approval = to_bytes(Approval("core", "world", commit, hashlib.sha256(pkgbuild).hexdigest()))
    write_signed(folder / "world-approval.json", approval, world.maintainers[:2])
    build = to_bytes(Build("world", commit, pkg.name, sha, "0" * 64))
    write_signed(folder / "world-build.json", build, world.builders[:2])


def test_the_next_key_waits_out_the_overlap(tmp_path: Path) -> None:
    """Users' keyrings need time to learn the next key: the enclave refuses to switch to it
    before the policy's overlap has passed since a policy first named it."""
    (tmp_path / "keys").mkdir()
    world: World = make_world(tmp_path / "keys")
    new_spec, new_cert = new_key(tmp_path, "next")
    keys = {"current": [world.admins[2].cert], "next": [new_cert]}
    policy = tmp_path / "policy.json"
    doc = world.policy(repository_keys=keys, key_overlap_seconds=3600).to_bytes()
    write_signed(policy, doc, world.admins[:2])
    shutil.copy(world.admins[2].signer.path, tmp_path / "repo.key")
    home = tmp_path / "enclave"
    made = cli("enclave", "init", "--home", str(home), "--signer", f"soft:{tmp_path / 'repo.key'}",
               "--policy", str(policy), "--origin", "test.example/log")  # fmt: skip
    assert made.returncode == 0, made.stderr
    early = cli("enclave", "signer", "--home", str(home), "--signer", new_spec)
    assert early.returncode != 0 and "keyrings for 1.0 hours" in early.stdout + early.stderr
