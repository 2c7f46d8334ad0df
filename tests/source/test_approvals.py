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
from tests.policy.world import World


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


def _gpg_home(tmp_path: Path, person: object) -> Path:
    """A gpg home holding one maintainer's secret key (for `git commit -S`)."""
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    key = person.signer.path  # type: ignore[attr-defined]
    subprocess.run(["gpg", "--homedir", str(home), "--batch", "--import", str(key)],
                   capture_output=True, check=True)  # fmt: skip
    return home


def test_authorship_comes_from_signed_commits_not_from_chosen_emails(
    tmp_path: Path, world: World
) -> None:
    """Issue 16, item 5: a commit signed by a maintainer's key names that maintainer as its
    author, whatever emails it carries; an unsigned commit counts its committer."""
    import os

    from tests import tools

    repo = tmp_path / "git" / "hello"
    repo.mkdir(parents=True)
    rogue = world.maintainers[1]
    home = _gpg_home(tmp_path, rogue)
    env = {**os.environ, "GNUPGHOME": str(home)}
    who = ["-c", "user.name=Someone", "-c", "user.email=someone@example.org"]

    def commit(*extra: str) -> None:
        subprocess.run(["git", "-C", str(repo), *who, *extra], check=True, env=env,
                       capture_output=True)  # fmt: skip

    commit("init", "-q")
    (repo / "PKGBUILD").write_text("pkgname=hello\n")
    commit("add", "PKGBUILD")
    commit("-c", f"user.signingkey={rogue.fpr}", "commit", "-q", "-S", "-m", "mine, not mine")
    policy = world.policy()
    s = Source(tmp_path / "srv", tmp_path / "git", lambda: policy, "core", None)
    (signed,) = s.scan()
    assert signed["author"] == rogue.fpr.upper(), signed  # the signer, not someone@example.org
    # unsigned, authored "as" maint0 but committed by maint2: the committer is the author
    (repo / "PKGBUILD").write_text("pkgname=hello\npkgrel=2\n")
    commit("add", "PKGBUILD")
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=M2", "-c", "user.email=maint2@example.org",
         "commit", "-q", "-m", "unsigned", "--author", "M0 <maint0@example.org>"],
        check=True, env=env, capture_output=True,
    )  # fmt: skip
    (unsigned,) = s.scan()
    assert unsigned["author"] == world.maintainers[2].fpr.upper(), unsigned
    tools.gpg_kill(home)
