"""What the benchmarks share: taking a database as already signed by an enclave."""

from __future__ import annotations

import hashlib

from reposeal import canonical
from reposeal.enclave.dbread import read_db, read_files_db
from reposeal.enclave.home import EnclaveHome
from reposeal.enclave.records import record_to_json


def take_as_signed(
    home: EnclaveHome,
    data: bytes,
    repo: str = "core",
    arch: str = "x86_64",
    files_db: bytes | None = None,
) -> None:
    """Log ``data`` (and its files database) as the last database signed for repo/arch,
    with the records and chunk maps the worker itself would derive (so the next transition
    reuses them). A benchmark measures one transition, not the bootstrap of thousands of
    packages' evidence."""
    digest = home.store_db(data)
    first = read_db(data, "bootstrap", {}, {})
    files = read_files_db(files_db, "bootstrap", {}, {}) if files_db else None
    records = canonical.dumps(
        [
            record_to_json(first.records[n], first.entries[n], files.files[n] if files else None)
            for n in sorted(first.records)
        ]
    )
    chunks = canonical.dumps({"db": first.chunks, "files": files.chunks} if files else first.chunks)
    for blob in (records, chunks):
        home.store_records(blob, hashlib.sha256(blob).hexdigest())
    entry = {
        "v": 1,
        "type": "db",
        "job": "bootstrap",
        "repo": repo,
        "arch": arch,
        "parent": None,
        "db_sha256": digest,
        "policy_version": 1,
        "evidence": [],
        "used_overrides": [],
        "signature": "",
        "records": hashlib.sha256(records).hexdigest(),
        "chunks": hashlib.sha256(chunks).hexdigest(),
        **({"files_sha256": hashlib.sha256(files_db).hexdigest()} if files_db else {}),
    }
    with home.open_log() as log:
        log.append([canonical.dumps(entry)])
        home.checkpoint(log, home.key())
