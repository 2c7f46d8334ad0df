"""The ``soft`` backend: an OpenPGP key in a file, used through pysequoia (Sequoia-PGP)."""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import pysequoia
from pysequoia.packet import PacketPile, Tag

from reposeal.errors import SigningError, ToolMissingError
from reposeal.openpgp import packets
from reposeal.openpgp.signer import NO_OPTIONS, SignOptions
from reposeal.openpgp.verify import sequoia_message


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
    _fast: tuple[packets.PublicKey, packets.RawSign] | None = field(
        default=None, init=False, repr=False
    )
    _fast_checked: bool = field(default=False, init=False, repr=False)

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

    def cert(self) -> pysequoia.Cert:
        return self._key().extract_certificate()

    def certificate(self) -> bytes:
        return bytes(self.cert())

    def _check_usable(self) -> None:
        cert = self.cert()
        if cert.is_revoked:
            raise SigningError("the key is revoked; create a new one", path=self.path)
        exp = cert.expiration
        if exp is not None and exp.timestamp() <= time.time():
            raise SigningError(
                f"the key expired on {exp:%Y-%m-%d}; extend it or create a new one", path=self.path
            )

    def _fast_key(self) -> tuple[packets.PublicKey, packets.RawSign] | None:
        """The signing key Sequoia would use, as an OpenSSL key, or None (protected key).

        Sequoia hashes SHA-512 at about two thirds of OpenSSL's speed; for large inputs we
        hash with hashlib and let OpenSSL sign the digest, inside the same packet builder the
        PKCS#11 backend uses. Sequoia still decides which (sub)key is valid for signing.
        """
        if not self._fast_checked:
            self._fast_checked = True
            tsk = self._key()
            probe = pysequoia.sign(
                tsk.signer(self.password), b"", mode=pysequoia.SignatureMode.DETACHED, armor=False
            )
            issuer = (pysequoia.Sig.from_bytes(probe).issuer_fingerprint or "").lower()
            for p in PacketPile.from_bytes(bytes(tsk)):
                if p.tag in (Tag.SecretKey, Tag.SecretSubkey) and (p.fingerprint or "") == issuer:
                    try:
                        secret = packets.parse_secret_key(p.body)
                    except ValueError:
                        break
                    self._fast = (secret.public, _openssl_signer(secret))
                    break
        return self._fast

    def sign_detached(self, stream: BinaryIO, options: SignOptions = NO_OPTIONS) -> bytes:
        self._check_usable()
        try:
            fast = self._fast_key()
            if fast is None:  # a password-protected key: Sequoia signs (and streams files)
                if options != NO_OPTIONS:
                    raise SigningError(
                        "a password-protected key file cannot make expiring or annotated "
                        "signatures here; use an unprotected key file, gpg or pkcs11",
                        path=self.path,
                    )
                return self._sequoia_sign(stream)
        except RuntimeError as exc:
            raise SigningError(f"cannot sign: {sequoia_message(exc)}", path=self.path) from None
        key, raw_sign = fast

        def feed(h: hashlib._Hash) -> None:
            while chunk := stream.read(1 << 20):
                h.update(chunk)

        return packets.signature(
            key,
            packets.SIG_BINARY,
            feed,
            raw_sign,
            created=int(time.time()),
            extra_hashed=packets.document_subpackets(options.expires_in, options.notations),
        )

    def _sequoia_sign(self, stream: BinaryIO) -> bytes:
        signer = self._key().signer(self.password)
        mode = pysequoia.SignatureMode.DETACHED
        if isinstance(stream, io.BytesIO):
            return pysequoia.sign(signer, stream.getvalue(), mode=mode, armor=False)
        try:
            source = Path(f"/proc/self/fd/{stream.fileno()}")
        except (AttributeError, OSError, ValueError):
            return pysequoia.sign(signer, stream.read(), mode=mode, armor=False)
        with tempfile.TemporaryDirectory(prefix="reposeal-sig-") as tmp:
            out = Path(tmp) / "sig"
            pysequoia.sign_file(signer, source, out, mode=mode, armor=False)
            return out.read_bytes()


def _openssl_signer(secret: packets.SecretKey) -> packets.RawSign:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa, utils

    if secret.public.algorithm == packets.ALGO_EDDSA:
        seed = secret.secret_mpis[0].rjust(32, b"\0")
        ed = ed25519.Ed25519PrivateKey.from_private_bytes(seed)

        def sign_ed(data: bytes) -> Sequence[bytes]:
            sig = ed.sign(data)
            return (sig[:32], sig[32:])

        return sign_ed
    d, p, q, _u = (int.from_bytes(m, "big") for m in secret.secret_mpis)
    n_raw, rest = packets._read_mpi(secret.public.material, 0)
    e_raw, _ = packets._read_mpi(secret.public.material, rest)
    public = rsa.RSAPublicNumbers(int.from_bytes(e_raw, "big"), int.from_bytes(n_raw, "big"))
    numbers = rsa.RSAPrivateNumbers(
        p, q, d, rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q), rsa.rsa_crt_iqmp(p, q), public
    )
    key = numbers.private_key()
    prefix = packets.DIGEST_INFO[packets.HASH_SHA512]

    def sign_rsa(data: bytes) -> Sequence[bytes]:
        digest = data[len(prefix) :]
        return (key.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA512())),)

    return sign_rsa
