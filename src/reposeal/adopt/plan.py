"""`reposeal adopt plan`: the adoption statement for an existing repository folder.

The folder's database is read strictly (as `db verify` reads it) and every package it lists
must be beside it with the sha256 the database names (and, with a keyring, a packager
signature that verifies with it). The statement names each file by its sha256, so what the
admins sign is exactly those bytes: the enclave later reads the files themselves, never this
database.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from reposeal.alpm.syncdb import read_entries, validate_entries
from reposeal.errors import InputError, ReposealError
from reposeal.evidence.statements import Adoption
from reposeal.openpgp.verify import Keyring, verify_detached


class AdoptionPlanError(InputError):
    """The folder does not make a repository that can be adopted as it is."""


@dataclass(frozen=True)
class Plan:
    statement: Adoption
    problems: list[str]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def plan(folder: Path, repo: str, arch: str, keyring: tuple[Keyring, bytes] | None = None) -> Plan:
    """The adoption of ``folder``'s REPO.db (every problem found, not just the first)."""
    db = folder / f"{repo}.db"
    if not db.exists():
        raise AdoptionPlanError(f"no {repo}.db in {folder}: give the repository's folder")
    try:
        entries = read_entries(db, None)
    except ReposealError as exc:
        raise AdoptionPlanError(f"{db}: {exc.message}") from None
    problems = validate_entries(entries)
    files = []
    for e in entries.values():
        fields = e.fields()
        name = (fields.get("FILENAME") or [""])[0]
        entry_arch = (fields.get("ARCH") or [""])[0]
        if entry_arch not in (arch, "any"):
            problems.append(f"{e.dirname}: built for {entry_arch}, not {arch}")
            continue
        path = folder / name
        if not name or "/" in name or not path.is_file():
            problems.append(f"{e.dirname}: its file {name!r} is not in {folder}")
            continue
        digest = _sha256(path)
        if digest != e.sha256:
            problems.append(f"{name}: sha256 {digest[:16]}… is not the {e.sha256[:16]}… "
                            "the database names")  # fmt: skip
            continue
        if keyring is not None:
            sig = path.with_name(name + ".sig")
            try:
                verify_detached(path, sig.read_bytes(), keyring[0])
            except OSError:
                problems.append(f"{name}: no packager signature ({sig.name})")
                continue
            except ReposealError as exc:
                problems.append(f"{name}: the packager signature does not verify: {exc}")
                continue
        files.append((name, digest))
    if not files and not problems:
        problems.append(f"{db} lists no package")
    keyring_sha = hashlib.sha256(keyring[1]).hexdigest() if keyring else None
    return Plan(Adoption(repo, arch, tuple(sorted(files)), keyring_sha), problems)
