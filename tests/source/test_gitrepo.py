"""The PKGBUILD repositories, read with the real git: what the source machine takes from a
commit, and what it refuses (ids that are not commit ids, oversized PKGBUILDs)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from reposeal.alpm.limits import MAX_PKGBUILD
from reposeal.source import gitrepo
from reposeal.source.gitrepo import GitError
from tests.e2e.test_pipeline_e2e import git


@pytest.fixture
def repos(tmp_path: Path) -> Path:
    for name in ("hello", "not a name", "plain"):
        (tmp_path / name).mkdir()
    for name in ("hello", "not a name"):
        git(tmp_path / name, "init", "-q", "-b", "main")
    return tmp_path


def commit(repo: Path, text: str, stamp: int, extra: dict[str, str] | None = None) -> str:
    (repo / "PKGBUILD").write_text(text)
    for name, content in (extra or {}).items():
        (repo / name).write_text(content)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", f"at {stamp}", stamp=stamp)
    return git(repo, "rev-parse", "HEAD")


def test_a_commit_read_as_the_source_machine_reads_it(repos: Path) -> None:
    assert set(gitrepo.repositories(repos)) == {"hello"}, "only git repositories named as pkgbases"
    repo = repos / "hello"
    assert gitrepo.repositories(repo) == {"hello": repo}
    first = commit(repo, "pkgname=hello\npkgver=1\n", 1_700_000_000)
    second = commit(repo, "pkgname=hello\npkgver=2\n", 1_700_000_100, {"fix.patch": "+x\n"})
    top = gitrepo.head(repo, "hello")
    assert (top.id, top.timestamp, top.subject) == (second, 1_700_000_100, "at 1700000100")
    assert gitrepo.commit(repo, "hello", first).timestamp == 1_700_000_000
    assert gitrepo.pkgbuild(repo, first) == b"pkgname=hello\npkgver=1\n"
    change = gitrepo.diff(repo, first, second)
    assert "-pkgver=1" in change and "+pkgver=2" in change and "fix.patch" in change
    assert "pkgver=1" in gitrepo.diff(repo, None, first)
    with tarfile.open(fileobj=io.BytesIO(gitrepo.archive(repo, second))) as tar:
        assert sorted(tar.getnames()) == ["PKGBUILD", "fix.patch"]
    assert gitrepo.signed_payload(repo, second) is None, "an unsigned commit"


@pytest.mark.parametrize("cid", ["HEAD", "--output=/tmp/x", "a" * 39, "A" * 40, "main"])
def test_anything_but_a_full_commit_id_is_refused(repos: Path, cid: str) -> None:
    repo = repos / "hello"
    good = commit(repo, "pkgname=hello\n", 1_700_000_000)
    for call in (
        lambda: gitrepo.pkgbuild(repo, cid),
        lambda: gitrepo.archive(repo, cid),
        lambda: gitrepo.commit(repo, "hello", cid),
        lambda: gitrepo.diff(repo, good, cid),
        lambda: gitrepo.diff(repo, cid, good),
        lambda: gitrepo.signed_payload(repo, cid),
    ):
        with pytest.raises(GitError, match="full commit id"):
            call()


def test_a_missing_or_oversized_pkgbuild_is_a_git_error(repos: Path) -> None:
    repo = repos / "hello"
    big = commit(repo, "#" * (MAX_PKGBUILD + 1), 1_700_000_000)
    with pytest.raises(GitError, match="more than"):
        gitrepo.pkgbuild(repo, big)
    (repo / "PKGBUILD").unlink()
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "gone", stamp=1_700_000_100)
    with pytest.raises(GitError):
        gitrepo.pkgbuild(repo, git(repo, "rev-parse", "HEAD"))


def test_a_signed_commits_payload_is_what_its_signature_covers(repos: Path) -> None:
    """The raw object with the gpgsig header taken out, as `git verify-commit` checks it."""
    repo = repos / "hello"
    base = commit(repo, "pkgname=hello\n", 1_700_000_000)
    raw = git(repo, "cat-file", "commit", base).encode() + b"\n"
    head, _, body = raw.partition(b"\n\n")
    armored = b"-----BEGIN PGP SIGNATURE-----\n\nabc\n-----END PGP SIGNATURE-----"
    signed = head + b"\ngpgsig " + armored.replace(b"\n", b"\n ") + b"\n\n" + body
    (repo / "obj").write_bytes(signed)
    cid = git(repo, "hash-object", "-t", "commit", "-w", "obj")
    payload, signature = gitrepo.signed_payload(repo, cid)  # type: ignore[misc]
    assert payload == raw and signature == armored + b"\n"
