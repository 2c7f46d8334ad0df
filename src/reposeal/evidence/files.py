"""Statement and policy files on disk: ``NAME.json`` and its detached ``NAME.json.sig``.

Several signers share one ``.sig`` file (OpenPGP allows consecutive signature packets); each
new signature is appended atomically.
"""

from __future__ import annotations

import io
from pathlib import Path

from reposeal.alpm.limits import MAX_SIG_FILE_BYTES, MAX_STATEMENT_BYTES
from reposeal.alpm.safeio import read_limited
from reposeal.errors import InputError
from reposeal.fsio import atomic_write
from reposeal.openpgp.signer import Signer


def sig_path(path: Path) -> Path:
    return path.with_name(path.name + ".sig")


def write_signed(path: Path, raw: bytes, signer: Signer) -> None:
    """Write a new document and its first signature (refuses to overwrite)."""
    if path.exists():
        raise InputError("refusing to overwrite an existing file", path=path)
    signature = signer.sign_detached(io.BytesIO(raw))
    atomic_write(path, raw)
    atomic_write(sig_path(path), signature)


def append_signature(path: Path, signer: Signer) -> bytes:
    """Add ``signer``'s signature to ``path``'s .sig file; return the document bytes."""
    raw = read_limited(path, MAX_STATEMENT_BYTES, "document")
    existing = read_signatures(path)
    atomic_write(sig_path(path), existing + signer.sign_detached(io.BytesIO(raw)))
    return raw


def read_signatures(path: Path) -> bytes:
    sp = sig_path(path)
    return read_limited(sp, MAX_SIG_FILE_BYTES, "signature file") if sp.exists() else b""


def read_document(path: Path) -> tuple[bytes, bytes]:
    """(document bytes, signature file bytes)."""
    return read_limited(path, MAX_STATEMENT_BYTES, "document"), read_signatures(path)
