"""`reposeal db` operations in-process (the e2e tests reach them through the command line):
signed updates with a key file, the signing a repository remembers, refusals that leave the
database as it was, rollback, and a damaged index costing only speed."""

from __future__ import annotations

import json
from pathlib import Path

import pysequoia
import pytest

from reposeal.alpm.syncdb import read_entries
from reposeal.alpm.synthetic import write_package
from reposeal.errors import InputError, RefusedError
from reposeal.openpgp.soft import SoftSigner, generate_key_file
from reposeal.openpgp.verify import Keyring, verify_detached
from reposeal.repo import dbupdate
from reposeal.repo.dbupdate import UpdateOptions


def quiet(_: str) -> None:
    pass


@pytest.fixture
def key(tmp_path: Path) -> Path:
    path = tmp_path / "repo.key"
    generate_key_file(path, "Repo <repo@example.org>", "ed25519")
    return path


def signed_by(key: Path, spec_path: Path | None = None) -> UpdateOptions:
    return UpdateOptions(signer=SoftSigner(key), signer_spec=f"soft:{spec_path or key}")


def versions(db: Path) -> dict[str, str]:
    return {n: e.version for n, e in read_entries(db, db.with_name("r.files.tar.gz")).items()}


def test_signed_updates_remember_their_key_and_lifetime(tmp_path: Path, key: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    db = repo / "r.db.tar.gz"
    a = write_package(tmp_path, "a", "1-1", "any", files={"usr/share/a": b"a"})
    b = write_package(tmp_path, "b", "1-1", "any", files={"usr/share/b": b"b"})
    from reposeal.openpgp.signer import SignOptions

    opts = signed_by(key)
    opts = UpdateOptions(**{**opts.__dict__, "sign_options": SignOptions(expires_in=3600)})
    report = dbupdate.add(db, [a], opts, quiet)
    assert report.added == ["a 1-1"] and report.generation == "000001"
    remembered = json.loads((repo / "r.reposeal.json").read_text())["signing"]
    assert remembered == {"signer": f"soft:{key.resolve()}", "expires_in": 3600,
                          "fingerprint": SoftSigner(key).fingerprint.upper()}  # fmt: skip
    dbupdate.add(db, [b], UpdateOptions(), quiet)  # no signer given: signed as remembered
    sig = (repo / "r.db.tar.gz.sig").read_bytes()
    verify_detached(db.read_bytes(), sig, Keyring.from_bytes(SoftSigner(key).certificate()))
    made = pysequoia.Sig.from_bytes(sig)
    assert made.expiration is not None and made.created is not None
    assert (made.expiration - made.created).total_seconds() == 3600
    assert versions(db) == {"a": "1-1", "b": "1-1"}


def test_a_refused_update_leaves_the_database_as_it_was(tmp_path: Path, key: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    db = repo / "r.db.tar.gz"
    new = write_package(tmp_path, "a", "2-1", "any")
    dbupdate.add(db, [new], signed_by(key), quiet)
    before = {p.name: p.read_bytes() for p in repo.rglob("*") if p.is_file()}
    older = tmp_path / "old"
    older.mkdir()
    old = write_package(older, "a", "1-1", "any")
    with pytest.raises(RefusedError, match="older than 2-1"):
        dbupdate.add(db, [old], signed_by(key), quiet)
    with pytest.raises(RefusedError, match="no such package"):
        dbupdate.remove(db, ["zzz"], signed_by(key), quiet)
    assert {p.name: p.read_bytes() for p in repo.rglob("*") if p.is_file()} == before


def test_rollback_needs_leave_to_downgrade_and_keeps_generations(tmp_path: Path, key: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    db = repo / "r.db.tar.gz"
    for version in ("1-1", "2-1"):
        folder = tmp_path / version
        folder.mkdir()
        dbupdate.add(db, [write_package(folder, "a", version, "any")], signed_by(key), quiet)
    assert dbupdate.generations(db) == (["000001", "000002"], "000002")
    with pytest.raises(RefusedError, match="--allow-downgrade"):
        dbupdate.rollback(db, UpdateOptions(), quiet)
    with pytest.raises(InputError, match="kept: 000001, 000002"):
        dbupdate.rollback(db, UpdateOptions(), quiet, "000009", allow_downgrade=True)
    done = dbupdate.rollback(db, UpdateOptions(), quiet, allow_downgrade=True)
    assert done.downgraded == ["a 2-1 -> 1-1"] and done.generation == "000003"
    assert versions(db) == {"a": "1-1"} and done.signed_by is not None


def test_a_damaged_index_costs_only_speed(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    db = repo / "r.db.tar.gz"
    dbupdate.add(db, [write_package(tmp_path, "a", "1-1", "any")], UpdateOptions(), quiet)
    index = repo / "r.current" / "r.index.json"
    damaged = index.read_text().replace('"count":1', '"count":7')
    index.unlink()  # (the generation is read-only in spirit; this test plays the disk error)
    index.write_text(damaged)
    said: list[str] = []
    report = dbupdate.add(db, [write_package(tmp_path, "b", "1-1", "any")], UpdateOptions(),
                          said.append)  # fmt: skip
    assert report.added == ["b 1-1"] and any("reading all" in s for s in said), said
    assert versions(db) == {"a": "1-1", "b": "1-1"}
