"""Policy rotation is a log entry: refused unless the old and the new admin thresholds both
sign a higher version; later signatures follow the new policy; `audit` replays each entry
under the policy that was in force, and notices a policy swapped on disk."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from reposeal.evidence.statements import Approval, Build, to_bytes
from tests import tools
from tests.e2e.test_enclave_e2e import (
    cli,
    evidence,
    setup,  # noqa: F401  (fixture)
    sign_and_add,
    write_signed,
)
from tests.policy.world import World

pytestmark = pytest.mark.e2e


def rotate(home: Path, document: Path) -> tuple[int, dict]:
    out = cli("enclave", "policy", "--home", str(home), str(document))
    return out.returncode, json.loads(out.stdout) if out.stdout else {"stderr": out.stderr}


def test_rotation_is_logged_followed_and_audited(
    tmp_path: Path,
    setup: tuple[World, Path, Path, Path],  # noqa: F811
    built_packages: dict[str, Path],
) -> None:
    world, home, repo, pkg = setup
    out = tmp_path / "out"
    code, first = sign_and_add(home, pkg, evidence(world, tmp_path / "e1", pkg), "v1-job", out)
    assert code == 0, first

    # v2 asks for one approval instead of two
    v2 = tmp_path / "v2" / "policy.json"
    v2.parent.mkdir()
    write_signed(v2, world.policy(version=2, approvals=1).to_bytes(), world.admins[:1])
    code, answer = rotate(home, v2)
    assert code == 3 and "admin" in " ".join(answer["reasons"]), answer  # one admin is not 2
    same = tmp_path / "same" / "policy.json"
    same.parent.mkdir()
    write_signed(same, world.policy(version=1, approvals=1).to_bytes(), world.admins[:2])
    code, answer = rotate(home, same)
    assert code == 3 and "does not replace" in " ".join(answer["reasons"]), answer
    write_signed(v2, world.policy(version=2, approvals=1).to_bytes(), world.admins[:2])
    code, answer = rotate(home, v2)
    assert code == 0, answer
    status = json.loads(cli("enclave", "status", "--json", "--home", str(home)).stdout)
    assert status["policy_version"] == 2
    assert status["policy_sha256"] == hashlib.sha256(v2.read_bytes()).hexdigest()

    # under v2, one maintainer's approval is enough for the upgrade
    new_pkg = repo / built_packages["hello-1.1"].name
    shutil.copy2(built_packages["hello-1.1"], new_pkg)
    ev = tmp_path / "e2"
    ev.mkdir()
    pkgbuild = tools.pkgbuild(*tools.PKGBUILDS["hello-1.1"]).encode()
    approval = Approval("core", "hello", "d" * 40, hashlib.sha256(pkgbuild).hexdigest())
    write_signed(ev / "a.json", to_bytes(approval), world.maintainers[:1])
    sha = hashlib.sha256(new_pkg.read_bytes()).hexdigest()
    write_signed(
        ev / "b.json",
        to_bytes(Build("hello", "d" * 40, new_pkg.name, sha, "0" * 64)),
        world.builders[:2],
    )
    code, answer = sign_and_add(home, new_pkg, ev, "v2-job", out)
    assert code == 0, answer

    out = cli("enclave", "audit", "--json", str(home))
    report = json.loads(out.stdout)
    assert out.returncode == 0, report
    assert report["policy_rotations"] == 1 and report["refusals"] == 2 and report["signatures"] == 4

    # a policy swapped on disk after the fact does not pass the audit
    kept = home / "policies" / f"{hashlib.sha256(v2.read_bytes()).hexdigest()}.json"
    for copy in (kept, home / "policy.json"):
        copy.write_bytes(world.policy(version=2, approvals=3).to_bytes())
    out = cli("enclave", "audit", "--json", str(home))
    report = json.loads(out.stdout)
    assert out.returncode == 3
    assert any("policy rotation" in v for v in report["violations"]), report
    assert any("v2-job" in v for v in report["violations"]), report
