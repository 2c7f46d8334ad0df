"""The ``soft`` backend: an OpenPGP key in a file, used through pysequoia (Sequoia-PGP)."""

from __future__ import annotations

import io
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import pysequoia

from reposeal.errors import SigningError, ToolMissingError


def sequoia_message(exc: Exception) -> str:
    """pysequoia raises bare RuntimeErrors, sometimes with a Rust backtrace: keep line one."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def generate_key_file(path: Path, user_id: str, algo: str) -> str:
    """Create a v4 key (gpg 2.2 and pacman read v4 only) in a new 0600 file."""
    suites = {"ed25519": pysequoia.CipherSuite.Cv25519, "rsa4096": pysequoia.CipherSuite.RSA4k}
    tsk = pysequoia.Tsk.generate(
        user_id, profile=pysequoia.Profile.RFC4880, cipher_suite=suites[algo]
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(str(tsk))
    return tsk.extract_certificate().fingerprint.upper()


@dataclass
class SoftSigner:
    """Signs with the key in ``path`` (an armored or binary transferable secret key)."""

    path: Path
    password: str | None = None
    _tsk: pysequoia.Tsk | None = field(default=None, init=False, repr=False)

    def _key(self) -> pysequoia.Tsk:
        if self._tsk is None:
            if not self.path.is_file():
                raise ToolMissingError("key file not found", path=self.path)
            try:
                self._tsk = pysequoia.Tsk.from_file(str(self.path))
            except (RuntimeError, ValueError) as exc:
                raise ToolMissingError(
                    f"not an OpenPGP secret key: {sequoia_message(exc)}", path=self.path
                ) from None
        return self._tsk

    @property
    def fingerprint(self) -> str:
        return self._key().extract_certificate().fingerprint.upper()

    def certificate(self) -> pysequoia.Cert:
        return self._key().extract_certificate()

    def _check_usable(self) -> None:
        cert = self.certificate()
        if cert.is_revoked:
            raise SigningError("the key is revoked; create a new one", path=self.path)
        exp = cert.expiration
        if exp is not None and exp.timestamp() <= time.time():
            raise SigningError(
                f"the key expired on {exp:%Y-%m-%d}; extend it or create a new one", path=self.path
            )

    def sign_detached(self, stream: BinaryIO) -> bytes:
        self._check_usable()
        try:
            signer = self._key().signer(self.password)
            if isinstance(stream, io.BytesIO):
                return pysequoia.sign(
                    signer, stream.getvalue(), mode=pysequoia.SignatureMode.DETACHED, armor=False
                )
            # a real file: let Sequoia stream it from the descriptor, never all in memory
            out = Path(f"/proc/self/fd/{stream.fileno()}")
            import tempfile

            with tempfile.NamedTemporaryFile(prefix="reposeal-sig-") as sig:
                pysequoia.sign_file(
                    signer, out, sig.name, mode=pysequoia.SignatureMode.DETACHED, armor=False
                )
                return Path(sig.name).read_bytes()
        except RuntimeError as exc:
            raise SigningError(f"cannot sign: {sequoia_message(exc)}", path=self.path) from None
