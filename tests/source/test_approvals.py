"""What the source machine takes as an approval: a maintainer's signature over an approval
of a proposal exactly as it is; anything else is refused with the reason, and kept nowhere."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
from aiohttp import web

from reposeal.evidence.statements import Approval, Build, to_bytes
from reposeal.source.service import Source
from tests.policy.world import World, make_world


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return make_world(tmp_path_factory.mktemp("world"))


def git(repo: Path, *args: str) -> str:
    who = ["-c", "user.name=M", "-c", "user.email=maint0@example.org"]
    out = subprocess.run(["git", "-C", str(repo), *who, *args], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.fixture
def source(tmp_path: Path, world: World) -> tuple[Source, str, str]:
    repo = tmp_path / "git" / "hello"
    repo.mkdir(parents=True)
    git(repo, "init", "-q")
    (repo / "PKGBUILD").write_text("pkgname=hello\n")
    git(repo, "add", "PKGBUILD")
    git(repo, "commit", "-q", "-m", "hello")
    policy = world.policy()
    s = Source(tmp_path / "srv", tmp_path / "git", lambda: policy, "core", None)
    (proposal,) = s.scan()
    assert s.scan() == [], "a head is proposed once"
    return s, proposal["commit"], proposal["pkgbuild_sha256"]


def test_the_author_is_known_and_quorum_makes_a_job(world: World, source) -> None:  # type: ignore[no-untyped-def]
    s, commit, pkgbuild = source
    author = world.maintainers[0].fpr  # committed as maint0@example.org
    raw = to_bytes(Approval("core", "hello", commit, pkgbuild, author))
    own = s.approve(raw, world.maintainers[0].sign(raw))
    assert own["counted"] == [] and "author's own approval" in own["missing"][0]
    assert s.approve(raw, world.maintainers[1].sign(raw))["job"] is None
    done = s.approve(raw, world.maintainers[2].sign(raw))
    assert done["job"] == f"hello-{commit[:12]}-core" and done["missing"] == []


@pytest.mark.parametrize(
    "case",
    ["outsider", "builder key", "not an approval", "other pkgbuild", "other author",
     "unknown commit", "unknown repo", "garbage", "garbage signatures"],
)  # fmt: skip
def test_bad_approvals_are_refused_and_not_kept(world: World, source, case: str) -> None:  # type: ignore[no-untyped-def]
    s, commit, pkgbuild = source
    author = world.maintainers[0].fpr
    approval = Approval("core", "hello", commit, pkgbuild, author)
    signer = world.maintainers[1]
    raw = to_bytes(approval)
    if case == "outsider":
        signer = world.outsider  # type: ignore[assignment]
    elif case == "builder key":
        signer = world.builders[0]
    elif case == "not an approval":
        raw = to_bytes(Build("hello", commit, "hello-1-1-any.pkg.tar.zst", "0" * 64, "0" * 64))
    elif case == "other pkgbuild":
        raw = to_bytes(Approval("core", "hello", commit, hashlib.sha256(b"x").hexdigest(), author))
    elif case == "other author":
        raw = to_bytes(Approval("core", "hello", commit, pkgbuild, world.maintainers[1].fpr))
    elif case == "unknown commit":
        raw = to_bytes(Approval("core", "hello", "f" * 40, pkgbuild, author))
    elif case == "unknown repo":
        raw = to_bytes(Approval("nowhere", "hello", commit, pkgbuild, author))
    elif case == "garbage":
        raw = b"\x00not json"
    sigs = b"\xff\x00 not a signature" if case == "garbage signatures" else signer.sign(raw)  # type: ignore[union-attr]
    with pytest.raises(web.HTTPUnprocessableEntity) as refused:
        s.approve(raw, sigs)
    assert refused.value.text
    assert s.store.approvals("hello", commit) == []
