"""The review's attacks, as a compromised repo machine would try them, through the real
sandbox (`enclave propose` starts bubblewrap) and, where pacman is involved, the real pacman:
each is refused or cannot be expressed, nothing is signed, the enclave keeps serving, and a
forged log entry is named by `audit`."""

from __future__ import annotations

import base64
import hashlib
import io
import json
from pathlib import Path

import pytest

from reposeal import canonical
from reposeal.alpm import chunked, compression
from reposeal.alpm.syncdb import Entry, decompress_blob, entries_from_tars
from reposeal.enclave.home import EnclaveHome
from reposeal.policy.entries import ENTRY_VERSION
from tests.e2e.test_enclave_e2e import (  # noqa: F401  (fixture)
    cli,
    evidence,
    propose,
    scratch_pacman,
    serve,
    setup,
    sign_and_add,
    sign_package,
)
from tests.enclave.test_transition import HOSTILE
from tests.policy.world import World

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_package_files_are_refused_in_the_sandbox_and_it_keeps_serving(
    tmp_path: Path,
    setup: tuple[World, Path, Path, Path],  # noqa: F811
    case: str,
) -> None:
    """Classes 4 and 5: tar and decompression corners where readers disagree."""
    world, home, _, pkg = setup
    evil_dir = tmp_path / "evil"
    evil_dir.mkdir()
    data = HOSTILE[case]("hello")
    ext = ".zst" if data[:4] == b"\x28\xb5\x2f\xfd" else ".gz"
    evil = evil_dir / f"hello-1-1-x86_64.pkg.tar{ext}"
    evil.write_bytes(data)
    ev = evidence(world, tmp_path / "ev-evil", evil)
    signed = sign_package(home, evil, ev, "p-evil")
    assert signed.returncode == 3, signed.stdout  # not even the package is signed
    out = tmp_path / "out"
    code, refused = propose(home, "t-evil", out, "--add", str(evil), "--evidence", str(ev))
    assert code == 3 and refused["reasons"], refused
    assert not out.exists()  # nothing written
    code, good = sign_and_add(home, pkg, evidence(world, tmp_path / "ev", pkg), "t1", out)
    assert code == 0, good  # the enclave keeps serving
    status = json.loads(cli("enclave", "status", "--json", "--home", str(home)).stdout)
    assert status["log_size"] == 5  # genesis, two logged refusals, the package, the database


def test_pacman_sees_exactly_the_package_s_own_fields(
    tmp_path: Path,
    setup: tuple[World, Path, Path, Path],  # noqa: F811
) -> None:
    """Class 1: no field of a database entry comes from the repo machine. pacman's view of
    the entry is the package's .PKGINFO, field by field."""
    world, home, _, pkg = setup
    out = tmp_path / "served"
    code, first = sign_and_add(home, pkg, evidence(world, tmp_path / "ev", pkg), "t1", out)
    assert code == 0, first
    serve(pkg, "p-t1", out)
    scratch = scratch_pacman(tmp_path, world, out)
    try:
        import subprocess

        from tests import tools

        tools.run_text(scratch.command("-Sy"))
        info = tools.run_text(scratch.command("-Si", "hello")).stdout
        pkginfo = subprocess.run(
            ["bsdtar", "-xOf", str(pkg), ".PKGINFO"], capture_output=True, text=True, check=True
        ).stdout
        fields = dict(line.split(" = ", 1) for line in pkginfo.splitlines() if " = " in line)
        assert f"Version         : {fields['pkgver']}" in info
        assert f"Description     : {fields['pkgdesc']}" in info
        assert "Replaces        : None" in info and "Conflicts With  : None" in info
    finally:
        tools.gpg_kill(scratch.gpgdir)


def _forge(home: Path, extra: str) -> int:
    """A compromised enclave (its key, its disk) logs a database with an entry nobody
    approved, and no records for it: what `audit` must name."""
    h = EnclaveHome(home)
    h.load_state()
    last = h.last_databases("core", "x86_64")
    assert last is not None
    kind = compression.GZIP
    db = decompress_blob(h.read_db(last.db), "db")
    files = decompress_blob(h.read_db(last.files), "files")
    entries = list(entries_from_tars(db, files, "db", "files").values())
    fake = b"%FILENAME%\n" + f"{extra}-1-1-any.pkg.tar.zst".encode() + b"\n\n%NAME%\n"
    fake += extra.encode() + b"\n\n%VERSION%\n1-1\n\n%REPLACES%\nopenssh\n\n"
    entries.append(Entry(extra, "1-1", fake, b"%FILES%\nusr/bin/evil\n"))
    chunks = chunked.make_chunks(entries, kind)
    new_db, new_files = (chunked.assemble(chunks, p, kind) for p in ("db", "files"))
    index = json.dumps(
        chunked.index_document(chunks, kind, {"db": new_db, "files": new_files}),
        separators=(",", ":"),
        sort_keys=True,
    ).encode()
    digests = {}
    for name, data in (("db", new_db), ("files", new_files), ("index", index)):
        digests[name] = hashlib.sha256(data).hexdigest()
        (home / "dbs" / digests[name]).write_bytes(data)
    records = canonical.dumps([])
    h.store_records(records, hashlib.sha256(records).hexdigest())
    key = h.key()
    sig = base64.b64encode(key.sign_detached(io.BytesIO(new_db))).decode()
    doc = {
        "v": ENTRY_VERSION, "type": "db", "job": "forged", "request": "forged",
        "repo": "core", "arch": "x86_64", "parent": last.db, "policy_version": 1,
        "evidence": [], "db_sha256": digests["db"], "files_sha256": digests["files"],
        "index_sha256": digests["index"], "compression": ".gz",
        "records": hashlib.sha256(records).hexdigest(), "moved_from": {}, "removes": [],
        "replaced": [], "used_overrides": [], "used_removals": [], "admitted": {},
        "parent_files": last.files, "parent_index": last.index,
        "signature": sig, "files_signature": sig,
    }  # fmt: skip
    with h.open_log() as log:
        index_of = log.size
        h.append(log, canonical.dumps(doc), key)
    return index_of


def test_audit_re_reads_the_signed_bytes_and_names_a_forged_entry(
    tmp_path: Path,
    setup: tuple[World, Path, Path, Path],  # noqa: F811
) -> None:
    """Class 8: audit rebuilds what each signed database must hold from the log's records
    and compares it with the bytes that were signed."""
    world, home, _, pkg = setup
    code, first = sign_and_add(home, pkg, evidence(world, tmp_path / "ev", pkg), "t1", tmp_path)
    assert code == 0, first
    clean = json.loads(cli("enclave", "audit", "--json", str(home)).stdout)
    assert clean["ok"], clean
    # --packages: every package file re-read from a mirror, its record and entries re-derived
    mirror = tmp_path / "mirror"
    (mirror / "core" / "os" / "x86_64").mkdir(parents=True)
    published = mirror / "core" / "os" / "x86_64" / pkg.name
    published.write_bytes(pkg.read_bytes())
    rederived = cli("enclave", "audit", "--json", "--packages", str(mirror), str(home))
    assert json.loads(rederived.stdout)["ok"], rederived.stdout
    from reposeal.alpm.synthetic import package_bytes

    published.write_bytes(package_bytes("hello", "1.0-1", "any"))  # another file, same name
    swapped = json.loads(cli("enclave", "audit", "--json", "--packages", str(mirror),
                             str(home)).stdout)  # fmt: skip
    assert any("not what the file's bytes give" in v for v in swapped["violations"]), swapped
    index = _forge(home, "sneaky")
    report = json.loads(cli("enclave", "audit", "--json", str(home)).stdout)
    assert not report["ok"]
    named = [v for v in report["violations"] if v.startswith(f"entry {index} ")]
    assert any("lists sneaky 1-1, which the log never put there" in v for v in named), report
    assert any("would have refused it" in v for v in named), report
