"""A home's log as its mirrors carry it (through the repo machine's copy, exported as
tiles), and the auditor's copy rebuilt from it (`enclave restore --keyring`): every file
checked against the hash its entry names, a mirror that lies refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from reposeal.enclave.audit import audit
from reposeal.enclave.home import EnclaveHome
from reposeal.enclave.restore import RestoreError, fetch_copy
from reposeal.errors import InputError, VerificationError
from reposeal.openpgp.verify import Keyring
from reposeal.repo.logmirror import LogCopy
from reposeal.translog.store import TransparencyLog
from tests.enclave.test_jobs import pool, published  # noqa: F401
from tests.policy.world import World
from tests.repo.test_logmirror import tar


def mirror_of(home: EnclaveHome, folder: Path) -> Path:
    """The log of ``home`` as the enclave pushes it and the repo machine exports it."""
    copy = LogCopy(folder / "repo-machine")
    with TransparencyLog(home.log_path) as log:
        entries = log.entries(0, log.size)
        note = log.latest_checkpoint()[2]  # type: ignore[index]
    files: dict[str, bytes] = {}
    for e in entries:
        files |= home.files_named_by(e)
    copy.receive_files(tar(files))
    copy.receive(0, entries, note, (home.path / "checkpoint.sig").read_bytes())
    copy.export(folder / "mirror" / "log")
    return folder / "mirror" / "log"


@pytest.fixture
def mirror(tmp_path: Path, published: Path) -> Path:  # noqa: F811
    return mirror_of(EnclaveHome(published), tmp_path)


def test_the_auditors_copy_is_the_enclaves_log_and_audits_clean(
    tmp_path: Path,
    mirror: Path,
    published: Path,  # noqa: F811
    world: World,
) -> None:
    keyring = Keyring.from_bytes((published / "repo-key.pgp").read_bytes())
    log, _ = fetch_copy(tmp_path / "copy", f"file://{mirror}", keyring)
    with TransparencyLog(published / "log.sqlite") as original:
        assert log.checkpoint.size == original.size
    report = audit(tmp_path / "copy")
    assert report.ok and report.signatures == 2, report.violations
    evidence = sorted(p.name for p in (tmp_path / "copy" / "evidence").iterdir())
    assert any(n.endswith(".sig") and not n.endswith(".json.sig") for n in evidence)
    with pytest.raises(InputError, match="non-empty"):
        fetch_copy(tmp_path / "copy", f"file://{mirror}", keyring)


def test_a_lying_mirror_and_a_foreign_key_rebuild_nothing(
    tmp_path: Path,
    mirror: Path,
    published: Path,  # noqa: F811
    world: World,
) -> None:
    keyring = Keyring.from_bytes((published / "repo-key.pgp").read_bytes())
    sig = next(p for p in (mirror / "evidence").iterdir() if p.name.endswith(".sig"))
    good = sig.read_bytes()
    sig.write_bytes(good + b"\n")  # a signature file no entry names by that hash
    with pytest.raises(RestoreError, match="does not match its hash"):
        fetch_copy(tmp_path / "a", f"file://{mirror}", keyring)
    assert not (tmp_path / "a").exists(), "nothing written"
    sig.write_bytes(good)
    sig.unlink()
    with pytest.raises(VerificationError):
        fetch_copy(tmp_path / "b", f"file://{mirror}", keyring)
    sig.write_bytes(good)
    foreign = Keyring.from_bytes(world.admins[0].cert.encode())
    with pytest.raises(VerificationError):
        fetch_copy(tmp_path / "c", f"file://{mirror}", foreign)
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()
