"""The PKGBUILD git repositories, read with the real git (one repository per pkgbase, as
Arch keeps them, or a directory of them). Nothing here trusts a commit's content: it only
reads bytes, which the approvals and the enclave then bind by hash."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from reposeal.alpm.limits import MAX_ARCHIVE, MAX_COMMIT_OBJECT, MAX_DIFF, MAX_PKGBUILD
from reposeal.alpm.names import check_name
from reposeal.errors import InputError, ReposealError, ToolMissingError
from reposeal.protocol.jobformat import COMMIT

__all__ = ["COMMIT", "MAX_ARCHIVE"]  # shared with the builders, through protocol


class GitError(InputError):
    """git failed, or a repository does not hold what it should."""


@dataclass(frozen=True)
class Commit:
    pkgbase: str
    id: str
    author_email: str
    timestamp: int  # committer time: the build's SOURCE_DATE_EPOCH
    subject: str
    committer_email: str = ""


def _git(repo: Path, *args: str, limit: int = MAX_DIFF) -> bytes:
    if shutil.which("git") is None:
        raise ToolMissingError("git is not installed (Debian: apt-get install git)")
    proc = subprocess.run(
        ["git", "-C", str(repo), "-c", "safe.directory=*", *args],
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        raise GitError(f"git {args[0]}: {proc.stderr.decode(errors='replace').strip()[:300]}")
    if len(proc.stdout) > limit:
        raise GitError(f"git {args[0]}: more than {limit} bytes of output")
    return proc.stdout


def repositories(folder: Path) -> dict[str, Path]:
    """pkgbase -> its git repository: FOLDER itself if it is one (named after the folder),
    else each sub-folder that is one."""
    found: dict[str, Path] = {}
    candidates = [folder] if (folder / ".git").exists() else sorted(folder.iterdir())
    for path in candidates:
        if path.is_dir() and (path / ".git").exists():
            try:
                found[check_name(path.name)] = path
            except ReposealError:
                continue  # not a pkgbase name: not ours
    return found


def head(repo: Path, pkgbase: str, branch: str = "HEAD") -> Commit:
    """The newest commit of ``branch``."""
    out = _git(repo, "log", "-1", "--format=%H%x00%ae%x00%ce%x00%ct%x00%s", branch).decode()
    cid, email, committer, stamp, subject = out.rstrip("\n").split("\0", 4)
    return Commit(pkgbase, cid, email, int(stamp), subject, committer)


def signed_payload(repo: Path, cid: str) -> tuple[bytes, bytes] | None:
    """(the bytes a commit's OpenPGP signature covers, the signature) of a signed commit,
    read from the raw commit object as `git verify-commit` does; None if it is unsigned."""
    if not COMMIT.fullmatch(cid):
        raise GitError(f"{cid!r} is not a full commit id (40 hex digits)")
    raw = _git(repo, "cat-file", "commit", cid, limit=MAX_COMMIT_OBJECT)
    head, sep, body = raw.partition(b"\n\n")
    kept: list[bytes] = []
    signature: list[bytes] = []
    in_sig = False
    for line in head.split(b"\n"):
        if line.startswith((b"gpgsig ", b"gpgsig-sha256 ")):
            in_sig = True
            signature.append(line.split(b" ", 1)[1])
        elif in_sig and line.startswith(b" "):
            signature.append(line[1:])
        else:
            in_sig = False
            kept.append(line)
    if not signature:
        return None
    return b"\n".join(kept) + sep + body, b"\n".join(signature) + b"\n"


def commit(repo: Path, pkgbase: str, cid: str) -> Commit:
    if not COMMIT.fullmatch(cid):
        raise GitError(f"{cid!r} is not a full commit id (40 hex digits)")
    return head(repo, pkgbase, cid)


def pkgbuild(repo: Path, cid: str) -> bytes:
    """The PKGBUILD at ``cid`` (what approvals and .BUILDINFO bind by sha256)."""
    if not COMMIT.fullmatch(cid):
        raise GitError(f"{cid!r} is not a full commit id (40 hex digits)")
    return _git(repo, "show", f"{cid}:PKGBUILD", limit=MAX_PKGBUILD)


def diff(repo: Path, old: str | None, new: str) -> str:
    """What changed from ``old`` (the last published commit) to ``new``; everything, as a
    patch, when nothing was published yet."""
    for cid in (new,) if old is None else (old, new):
        if not COMMIT.fullmatch(cid):  # never an option git would take
            raise GitError(f"{cid!r} is not a full commit id (40 hex digits)")
    if old is None:
        out = _git(repo, "show", "--format=commit %H%nAuthor: %an <%ae>%n%n%s%n", new, "--")
        return out.decode(errors="replace")
    return _git(repo, "diff", f"{old}..{new}", "--").decode(errors="replace")


def archive(repo: Path, cid: str) -> bytes:
    """The tree at ``cid`` as a tar (what builders build)."""
    if not COMMIT.fullmatch(cid):
        raise GitError(f"{cid!r} is not a full commit id (40 hex digits)")
    return _git(repo, "archive", "--format=tar", cid, limit=MAX_ARCHIVE)
