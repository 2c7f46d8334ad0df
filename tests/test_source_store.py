"""The source machine's records and its git reader, in-process (the e2e tests reach them
through `source serve`): proposals, approvals merged one signature per maintainer, build
jobs handed to each builder once, leases released on restart, withdrawals; and the git
repositories read with the real git."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from reposeal.evidence.statements import Approval, to_bytes
from reposeal.source import gitrepo
from reposeal.source.store import Proposal, SourceStore
from tests.policy.world import World

COMMIT = "c" * 40


def proposal(pkgbase: str = "hello", commit: str = COMMIT) -> Proposal:
    return Proposal(gitrepo.Commit(pkgbase, commit, "a@example.org", 1_700_000_000, "s"),
                    "0" * 64, None)  # fmt: skip


def test_jobs_go_to_each_builder_once_and_come_back_on_release(tmp_path: Path) -> None:
    store = SourceStore(tmp_path)
    assert store.add_proposal(proposal()) and not store.add_proposal(proposal())
    job = store.add_job("core", "hello", COMMIT, 1_700_000_000)
    assert job is not None and store.add_job("core", "hello", COMMIT, 1) is None
    assert store.take("b0").id == job and store.take("b0") is None, "held by b0"
    assert store.take("b1").id == job, "every builder builds every job"
    store.release("b0")  # b0 restarted: what it held comes back to it
    assert store.take("b0").id == job
    store.add_report(job, "b0", {"files": {}})
    store.release("b0")
    assert store.take("b0") is None, "reported: done for b0"
    assert set(store.reports(job)) == {"b0"}


def test_a_withdrawn_job_goes_to_no_builder(tmp_path: Path) -> None:
    store = SourceStore(tmp_path)
    store.add_proposal(proposal())
    store.add_job("core", "hello", COMMIT, 1)
    store.add_withdrawal("w" * 64, "core", "hello", COMMIT, b"{}", b"")
    assert store.take("b0") is None
    assert [r for r, _, _ in store.withdrawals("hello", COMMIT)] == ["core"]
    store.add_job("extra", "hello", COMMIT, 1)  # withdrawn from core only
    assert store.take("b0").repo == "extra"


def test_approvals_keep_one_signature_per_maintainer(tmp_path: Path, world: World) -> None:
    store = SourceStore(tmp_path)
    raw = to_bytes(Approval("core", "hello", COMMIT, "0" * 64))
    digest = hashlib.sha256(raw).hexdigest()
    keyring = world.policy().keyrings["maintainers"]
    m0, m1 = world.maintainers[:2]
    store.add_approval(digest, "core", "hello", COMMIT, raw, m0.sign(raw), keyring)
    store.add_approval(digest, "core", "hello", COMMIT, raw, m0.sign(raw) + m1.sign(raw), keyring)
    ((_, _, sigs),) = store.approvals("hello", COMMIT)
    from reposeal.openpgp.packets import split_signatures

    assert len(split_signatures(sigs)) == 2, "m0 once, m1 once"


def git(repo: Path, *args: str) -> str:
    env = os.environ | {"GIT_AUTHOR_DATE": "@1700000000", "GIT_COMMITTER_DATE": "@1700000000"}
    who = ["-c", "user.name=C", "-c", "user.email=c@example.org"]
    return subprocess.run(["git", "-C", str(repo), *who, *args], capture_output=True, text=True,
                          env=env, check=True).stdout.strip()  # fmt: skip


def test_the_git_reader_with_the_real_git(tmp_path: Path) -> None:
    repo = tmp_path / "repos" / "hello"
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    (repo / "PKGBUILD").write_text("pkgname=hello\npkgver=1\n")
    git(repo, "add", "PKGBUILD")
    git(repo, "commit", "-q", "-m", "first")
    first = git(repo, "rev-parse", "HEAD")
    (repo / "PKGBUILD").write_text("pkgname=hello\npkgver=2\n")
    git(repo, "commit", "-q", "-am", "second")
    head = gitrepo.head(repo, "hello")
    assert head.subject == "second" and head.timestamp == 1_700_000_000
    assert gitrepo.repositories(tmp_path / "repos") == {"hello": repo}
    assert gitrepo.pkgbuild(repo, first) == b"pkgname=hello\npkgver=1\n"
    assert "+pkgver=2" in gitrepo.diff(repo, first, head.id)
    assert gitrepo.archive(repo, head.id)[257:262] == b"ustar", "a tar of the tree"
    assert gitrepo.signed_payload(repo, head.id) is None, "an unsigned commit"
    with pytest.raises(gitrepo.GitError):
        gitrepo.pkgbuild(repo, "f" * 40)


def test_a_job_per_architecture_goes_to_the_builders_of_it(tmp_path: Path) -> None:
    import sqlite3

    store = SourceStore(tmp_path)
    store.add_proposal(proposal())
    jobs = [store.add_job("core", "hello", COMMIT, 1, arch, True) for arch in ("x86_64", "aarch64")]
    assert jobs == [f"hello-{COMMIT[:12]}-core-x86_64", f"hello-{COMMIT[:12]}-core-aarch64"]
    assert store.take("arm0", "aarch64").arch == "aarch64"
    assert store.take("arm0", "aarch64") is None, "not the other architecture's"
    assert store.take("x0", "x86_64").id == jobs[0]
    assert store.take("old", None).id == jobs[0], "a builder that names none takes any"

    # a store made before jobs had an architecture is upgraded in place; its jobs go to all
    old = tmp_path / "old"
    old.mkdir()
    with sqlite3.connect(old / "source.sqlite") as db:
        db.execute("CREATE TABLE job (id TEXT PRIMARY KEY, repo TEXT NOT NULL, pkgbase TEXT "
                   "NOT NULL, commit_id TEXT NOT NULL, epoch INTEGER NOT NULL, created REAL "
                   "NOT NULL)")  # fmt: skip
        db.execute("INSERT INTO job VALUES ('j1', 'core', 'hello', ?, 1, 0)", (COMMIT,))
    upgraded = SourceStore(old)
    assert upgraded.take("arm0", "aarch64").id == "j1"


def test_a_proposal_reads_back_as_it_was_kept(tmp_path: Path) -> None:
    from reposeal.source.gitrepo import Commit
    from reposeal.source.store import Proposal, SourceStore

    store = SourceStore(tmp_path)
    kept = Proposal(Commit("hello", "c" * 40, "a@example.org", 1700000000, "bump"), "p" * 64, "AB")
    assert store.add_proposal(kept) and not store.add_proposal(kept), "once"
    assert store.proposal("hello", "c" * 40) == kept
    assert store.proposals() == [kept] and store.proposal("hello", "d" * 40) is None
