"""`repo adopt`: the repo machine asks the enclave to adopt an existing repository.

The statement (with the admins' signatures), every package file it names and its packager
signature, and the packagers' keyring go into the bridge's blob store; an update cycle of
its own then runs the usual steps (pool, propose as an ``adopt`` job, witness, publish,
log). The files are checked against the statement here first, so a mistake is found before
the enclave is asked; the enclave checks everything again.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from reposeal.alpm.limits import MAX_PACKAGER_SIG
from reposeal.errors import InputError
from reposeal.evidence.files import read_document
from reposeal.evidence.statements import Adoption, from_bytes
from reposeal.repo.plans import CyclePlan

if TYPE_CHECKING:
    from reposeal.repo.cycle import Machine
    from reposeal.repo.cycles import Cycle

ADOPTION = "(adoption)"  # how an adoption is named among a cycle's sources


def _blob(m: Machine, source: Path | bytes) -> str:
    """Put a file (linked when it can be) or bytes into the blob store; its sha256."""
    if isinstance(source, bytes):
        digest = hashlib.sha256(source).hexdigest()
    else:
        h = hashlib.sha256()
        with open(source, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        digest = h.hexdigest()
    target = m.queue.blobs / digest
    if not target.exists():
        tmp = target.with_name(f".{digest}.tmp")
        tmp.unlink(missing_ok=True)
        if isinstance(source, bytes):
            tmp.write_bytes(source)
        else:
            try:
                os.link(source, tmp)
            except OSError:
                shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    return digest


def request_adoption(
    m: Machine, statement: Path, packages: Path, keyring: Path | None, compression: str = ".gz"
) -> Cycle:
    """The cycle that adopts what ``statement`` names, from the files in ``packages``."""
    raw, sigs = read_document(statement)
    stmt = from_bytes(raw)
    if not isinstance(stmt, Adoption):
        raise InputError(f"{statement} is a {stmt.kind} statement, not an adoption")
    repo, arch = stmt.repo, stmt.arch
    if m.cycles.active(repo, arch) is not None:
        raise InputError(f"{repo}/{arch} has an update cycle under way; adopt when it is done")
    if m.db_path(repo, arch).exists():
        raise InputError(f"{repo}/{arch} is published already: only a new repository is adopted")
    ring = keyring.read_bytes() if keyring is not None else None
    if (hashlib.sha256(ring).hexdigest() if ring else None) != stmt.keyring_sha256:
        raise InputError("--keyring is not the keyring the adoption statement names")
    files: dict[str, str] = {}
    signatures: dict[str, str] = {}
    evidence = {f"evidence/{_blob(m, raw)}.json": hashlib.sha256(raw).hexdigest()}
    evidence[f"evidence/{hashlib.sha256(raw).hexdigest()}.json.sig"] = _blob(m, sigs)
    problems = []
    for name, sha in stmt.files:
        path = packages / name
        try:
            got = _blob(m, path)
        except OSError as exc:
            problems.append(f"{name}: {exc.strerror or exc}")
            continue
        if got != sha:
            problems.append(f"{name}: its sha256 is not the one the statement names")
            continue
        files[name] = sha
        sig = path.with_name(name + ".sig")
        if sig.exists() and sig.stat().st_size <= MAX_PACKAGER_SIG:
            data = sig.read_bytes()
            evidence[f"packages/{name}.sig"] = _blob(m, data)
            signatures[name] = base64.b64encode(data).decode()
    if problems:
        raise InputError(f"{len(problems)} files do not match: " + "; ".join(problems[:5]))
    if ring:
        evidence["keyring.pgp"] = _blob(m, ring)
    plan = CyclePlan(((ADOPTION, hashlib.sha256(raw).hexdigest()),), files,
                     evidence=evidence, package_signatures=signatures, adopt=True,
                     compression=compression)  # fmt: skip
    return m.cycles.create(repo, arch, plan)
