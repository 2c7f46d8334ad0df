"""The approved PKGBUILDs' texts, kept beside the log so that every mirror shows what the
maintainers approved (and anyone can diff one version against the last).

A maintainer's approval signs a PKGBUILD's sha256; the text itself comes with the job's
evidence (``evidence/SHA256.PKGBUILD``), written by the untrusted side. The enclave never
parses it: it keeps a text only if its bytes hash to the sha256 of a package the entry adds,
so a text on the mirror is the approved one or is not there.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from reposeal.alpm.limits import MAX_PKGBUILD_TEXT
from reposeal.errors import ReposealError

SUFFIX = ".PKGBUILD"


def path_in(folder: Path, digest: str) -> Path:
    """Where a home (or a copy of it) keeps the text with this sha256."""
    return folder / "pkgbuilds" / digest


def approved_texts(evidence: Path | None, wanted: Iterable[str | None]) -> dict[str, bytes]:
    """The texts in ``evidence`` whose bytes hash to one of ``wanted`` (the PKGBUILD sha256
    of each package added); anything else there, or too large, is left unread or dropped."""
    from reposeal.alpm.safeio import read_limited

    if evidence is None or not evidence.is_dir():
        return {}
    present = {p.name for p in evidence.iterdir()}  # one listing, not a look-up a package
    out: dict[str, bytes] = {}
    for digest in sorted({w for w in wanted if w and f"{w}{SUFFIX}" in present}):
        candidate = evidence / f"{digest}{SUFFIX}"
        try:
            text = read_limited(candidate, MAX_PKGBUILD_TEXT, "a PKGBUILD text")
        except ReposealError:
            continue
        if hashlib.sha256(text).hexdigest() == digest:
            out[digest] = text
    return out


def kept_texts(home: Path) -> dict[str, bytes]:
    """The texts a home (or its copy from the mirrors) keeps, by sha256, each checked."""
    import contextlib

    from reposeal.alpm.safeio import read_limited

    folder = home / "pkgbuilds"
    out: dict[str, bytes] = {}
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        if len(path.name) == 64 and not path.name.startswith("."):
            with contextlib.suppress(ReposealError):
                out[path.name] = read_limited(path, MAX_PKGBUILD_TEXT, "a PKGBUILD text")
    return verified(out)


def verified(texts: dict[str, bytes]) -> dict[str, bytes]:
    """Only the texts that match the sha256 they are kept under (a mirror may lie)."""
    return {d: t for d, t in texts.items() if hashlib.sha256(t).hexdigest() == d}
