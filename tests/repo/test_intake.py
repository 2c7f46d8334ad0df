"""The repo machine's intake, in this process, with real packages and keys: what it keeps
from builders and the source machine, what it refuses (and that a refused upload keeps
nothing), and what each approved source still lacks."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from reposeal.errors import InputError
from reposeal.evidence.statements import Approval, Build, to_bytes
from reposeal.repo.intake import Intake, UploadRefusedError
from tests import tools
from tests.policy.world import World

COMMIT = "c" * 40


@pytest.fixture
def intake(tmp_path: Path) -> Intake:
    (tmp_path / "blobs").mkdir()
    return Intake(tmp_path / "intake", tmp_path / "blobs")


def upload(tmp: Path, pkg: Path) -> Path:
    """The received file, as the service writes it beside the blobs."""
    received = tmp / "blobs" / f".upload-{pkg.name}"
    shutil.copy2(pkg, received)
    return received


def build(pkg: Path, sha: str | None = None, pkgbase: str = "hello") -> bytes:
    digest = sha or hashlib.sha256(pkg.read_bytes()).hexdigest()
    return to_bytes(Build(pkgbase, COMMIT, pkg.name, digest, "0" * 64))


def test_an_honest_source_goes_from_waiting_to_ready(
    tmp_path: Path, intake: Intake, world: World, built_packages: dict[str, Path]
) -> None:
    policy = world.policy()
    pkg = built_packages["hello-1.0"]
    stmt = build(pkg)
    for b in world.builders[:2]:
        intake.add_build(policy, stmt, b.sign(stmt), upload(tmp_path, pkg))
    text = tools.pkgbuild(*tools.PKGBUILDS["hello-1.0"]).encode()
    approval = to_bytes(Approval("core", "hello", COMMIT, hashlib.sha256(text).hexdigest()))
    intake.add_statement(policy, approval, world.maintainers[0].sign(approval))
    (waiting,) = intake.readiness(policy)
    assert waiting.missing and "1 maintainer approvals" in waiting.missing[0], waiting.missing
    intake.add_statement(policy, approval, world.maintainers[1].sign(approval))
    (ready,) = intake.readiness(policy)
    assert ready.missing == [] and set(ready.packages) == {"hello"}
    assert intake.package_path(ready.packages["hello"].sha256).read_bytes() == pkg.read_bytes()


@pytest.mark.parametrize("lie", ["another sha256", "another pkgbase", "not a package"])
def test_an_upload_that_does_not_hold_up_keeps_nothing(
    tmp_path: Path, intake: Intake, world: World, built_packages: dict[str, Path], lie: str
) -> None:
    policy = world.policy()
    pkg = built_packages["hello-1.0"]
    stmt = {"another sha256": build(pkg, sha="e" * 64),
            "another pkgbase": build(pkg, pkgbase="world"),
            "not a package": build(pkg)}[lie]  # fmt: skip
    received = upload(tmp_path, pkg)
    if lie == "not a package":
        received.write_bytes(b"\x1f\x8b" + b"\0" * 100)
    with pytest.raises(UploadRefusedError):
        intake.add_build(policy, stmt, world.builders[0].sign(stmt), received)
    assert [p.name for p in (tmp_path / "blobs").iterdir()] == [received.name], "no blob kept"
    assert intake.readiness(policy) == [] and intake.status(policy)["packages"] == 0


def test_only_the_policys_people_are_heard(
    tmp_path: Path, intake: Intake, world: World, built_packages: dict[str, Path]
) -> None:
    policy = world.policy()
    pkg = built_packages["hello-1.0"]
    stmt = build(pkg)
    outsider = world.outsider
    assert outsider is not None
    with pytest.raises(InputError):
        intake.check_build(policy, stmt, outsider.sign(stmt))
    with pytest.raises(InputError):  # a maintainer is not a builder
        intake.check_build(policy, stmt, world.maintainers[0].sign(stmt))
    approval = to_bytes(Approval("core", "hello", COMMIT, "a" * 64))
    with pytest.raises(InputError):
        intake.add_statement(policy, approval, world.builders[0].sign(approval))
    with pytest.raises(InputError):  # a build is not a statement the source machine sends
        intake.add_statement(policy, stmt, world.maintainers[0].sign(stmt))
    assert intake.readiness(policy) == []
