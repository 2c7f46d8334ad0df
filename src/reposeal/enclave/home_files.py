"""The content-addressed files of an enclave home: records and spilled fields
(HOME/records/SHA256.json), the databases it wrote (HOME/dbs/SHA256), each checked against
its name when read, and the files a log entry names. Part of ``EnclaveHome``."""

from __future__ import annotations

import hashlib
from pathlib import Path

from reposeal.enclave.records import named_files
from reposeal.errors import ReposealError
from reposeal.fsio import atomic_write, write_all


class EnclaveStateError(ReposealError):
    """The enclave's home is missing, incomplete or does not match its log."""


def holds(path: Path, digest: str) -> bool:
    """Does ``path`` (a file named by its content) exist with exactly that content? A crash
    can leave a named file incomplete; it is then written again."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest() == digest
    except OSError:
        return False


class HomeFiles:
    """Content-addressed storage for ``EnclaveHome``."""

    path: Path

    def read_records(self, digest: str) -> bytes:
        try:
            return (self.path / "records" / f"{digest}.json").read_bytes()
        except OSError:
            raise EnclaveStateError(
                f"records {digest[:16]}… named by the log are missing"
            ) from None

    def _store_blob(self, blob: bytes) -> str:
        digest = hashlib.sha256(blob).hexdigest()
        if not holds(self.records_path(digest), digest):
            write_all({self.records_path(digest): blob})
        return digest

    def files_named_by(self, raw_entry: bytes) -> dict[str, bytes]:
        """The files a log entry names (see ``named_files``), from this home."""
        out = {}
        for name in named_files(raw_entry, self.read_records):
            path = self.path / name
            if path.exists():
                out[name] = path.read_bytes()
        return out

    def records_path(self, digest: str) -> Path:
        return self.path / "records" / f"{digest}.json"

    def store_records(self, blob: bytes, digest: str) -> None:
        if not holds(self.records_path(digest), digest):
            atomic_write(self.records_path(digest), blob)

    def read_db(self, digest: str) -> bytes:
        """A database (or index) the enclave wrote, checked against its hash: the next
        transition starts from these bytes, never from anyone else's."""
        try:
            data = (self.path / "dbs" / digest).read_bytes()
        except OSError:
            raise EnclaveStateError(
                f"the database {digest[:16]}… the log names is missing from dbs/ "
                "(restore the home: `reposeal enclave restore`)"
            ) from None
        if hashlib.sha256(data).hexdigest() != digest:
            raise EnclaveStateError(f"dbs/{digest[:16]}… does not match its hash")
        return data
