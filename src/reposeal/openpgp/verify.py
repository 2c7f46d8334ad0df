"""Checking a detached signature against a keyring, strictly.

A signature counts only if it verifies cryptographically, its key is in the keyring, and that
key is neither revoked nor expired now. The answer is the signer's primary fingerprint.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pysequoia

from reposeal.alpm.limits import MAX_KEYRING_BYTES, MAX_SIGNATURE_BYTES
from reposeal.errors import InvalidSignatureFileError, ToolMissingError, VerificationError
from reposeal.openpgp.packets import key_fingerprints, revoked_keys


def sequoia_message(exc: Exception) -> str:
    """pysequoia raises bare RuntimeErrors, sometimes with a Rust backtrace: keep line one."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


@dataclass(frozen=True)
class Keyring:
    """A set of OpenPGP certificates (public keys) trusted for one purpose."""

    certs: tuple[pysequoia.Cert, ...]

    @classmethod
    def from_bytes(cls, data: bytes) -> Keyring:
        try:
            return cls(tuple(pysequoia.Cert.split_bytes(data)))
        except (RuntimeError, ValueError) as exc:
            raise InvalidSignatureFileError(f"not a keyring: {sequoia_message(exc)}") from None

    @classmethod
    def from_file(cls, path: Path) -> Keyring:
        from reposeal.alpm.safeio import read_limited

        try:
            return cls.from_bytes(read_limited(path, MAX_KEYRING_BYTES, "keyring"))
        except InvalidSignatureFileError as exc:
            raise exc.at(path) from None

    def fingerprints(self) -> list[str]:
        return [c.fingerprint.upper() for c in self.certs]


def verify_detached(data: bytes | Path, signature: bytes, keyring: Keyring) -> str:
    """Return the primary fingerprint of the keyring key that made ``signature`` over
    ``data`` (bytes, or a file read streaming); raise VerificationError otherwise."""
    if len(signature) > MAX_SIGNATURE_BYTES or not signature:
        raise InvalidSignatureFileError("signature is empty or larger than 16 KiB")
    try:
        sig = pysequoia.Sig.from_bytes(signature)
    except (RuntimeError, ValueError) as exc:
        raise InvalidSignatureFileError(
            f"not an OpenPGP signature: {sequoia_message(exc)}"
        ) from None
    issuer = (sig.issuer_fingerprint or "").upper()
    issuer_id = (sig.issuer_key_id or "").upper()
    candidates = list(keyring.certs)
    try:
        if isinstance(data, Path):
            result = pysequoia.verify(file=data, store=lambda _ids: candidates, signature=sig)
        else:
            result = pysequoia.verify(bytes=data, store=lambda _ids: candidates, signature=sig)
    except RuntimeError as exc:
        who = issuer or issuer_id or "an unknown key"
        owners = [c for c in candidates if _matches(c, issuer, issuer_id)]
        if not owners:
            raise VerificationError(
                f"signed by {who}, which is not in the keyring: import the signer's "
                "certificate if you trust it"
            ) from None
        _check_alive(owners[0], issuer)
        expiry = sig.expiration
        if expiry is not None and expiry.timestamp() <= time.time():
            raise VerificationError(
                f"the signature by {who} expired on {expiry:%Y-%m-%d %H:%M:%S} UTC: the "
                "repository must refresh it (a frozen or replayed copy looks exactly like this)"
            ) from None
        raise VerificationError(
            f"BAD signature by {who}: the data was changed after signing, or the key is "
            f"not valid for signing ({sequoia_message(exc)})"
        ) from None
    if not result.valid_sigs:
        raise VerificationError("no valid signature")
    primary = str(result.valid_sigs[0].certificate).upper()
    signing_key = str(getattr(result.valid_sigs[0], "signing_key", "") or issuer)
    _check_alive(next(c for c in candidates if c.fingerprint.upper() == primary), signing_key)
    return primary


def verify_as_made(data: bytes, signature: bytes, keyring: Keyring) -> str:
    """Like :func:`verify_detached`, but a signature that has *since* expired still counts:
    for auditing history (a database signature expires on purpose; it was good when made).
    An expired signature is checked by the real ``gpgv``, which tells good-but-expired
    (EXPSIG) from bad."""
    try:
        return verify_detached(data, signature, keyring)
    except VerificationError as exc:
        sig = pysequoia.Sig.from_bytes(signature)
        if sig.expiration is None or sig.expiration.timestamp() > time.time():
            raise
        fingerprint = _gpgv_expired_but_good(data, signature, keyring)
        if fingerprint is None:
            raise VerificationError(f"BAD signature (it has also expired): {exc.message}") from None
        return fingerprint


def _gpgv_expired_but_good(data: bytes, signature: bytes, keyring: Keyring) -> str | None:
    import shutil
    import subprocess
    import tempfile

    gpgv = shutil.which("gpgv")
    if gpgv is None:
        raise ToolMissingError("gpgv is not installed (Debian: gpgv)")
    with tempfile.TemporaryDirectory(prefix="reposeal-gpgv-") as tmp:
        ring, sig_file, data_file = (Path(tmp) / n for n in ("keys.gpg", "data.sig", "data"))
        ring.write_bytes(b"".join(bytes(c) for c in keyring.certs))
        sig_file.write_bytes(signature)
        data_file.write_bytes(data)
        out = subprocess.run(
            [gpgv, "--homedir", tmp, "--status-fd", "1", "--keyring", str(ring),
             str(sig_file), str(data_file)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
    status = [line.split() for line in out.stdout.splitlines() if line.startswith("[GNUPG:]")]
    if not any(s[1:2] == ["EXPSIG"] for s in status):
        return None
    valid = [s for s in status if s[1:2] == ["VALIDSIG"] and len(s) > 2]
    if not valid:
        return None
    primary = valid[0][-1].upper()  # VALIDSIG ... primary-key-fpr is the last field
    return primary if any(c.fingerprint.upper() == primary for c in keyring.certs) else None


def _check_alive(cert: pysequoia.Cert, signer: str = "") -> None:
    """A revoked or expired key signs nothing we accept, whenever the signature was made
    (gpg's semantics: a revocation of any reason counts, "soft" ones too). ``signer``: the
    fingerprint of the (sub)key that made the signature, when known."""
    primary = cert.fingerprint.upper()
    try:
        revoked = revoked_keys(bytes(cert))
    except ValueError:
        revoked = set()
    if cert.is_revoked or primary in revoked or signer.upper() in revoked:
        raise VerificationError(
            f"signed by {primary}, whose key is revoked: the repository must re-sign "
            "with its new key"
        )
    exp = cert.expiration
    if exp is not None and exp.timestamp() <= time.time():
        raise VerificationError(
            f"signed by {primary}, whose key expired on {exp:%Y-%m-%d}: the key owner must "
            "extend it (and you refresh it) or re-sign"
        )


def _matches(cert: pysequoia.Cert, fingerprint: str, key_id: str) -> bool:
    """Does the signature's issuer name this cert's primary key or one of its subkeys?"""
    try:
        fprs = key_fingerprints(bytes(cert))
    except ValueError:
        return False
    return any((fingerprint and f == fingerprint) or (key_id and f.endswith(key_id)) for f in fprs)


@dataclass(frozen=True)
class Verifier:
    """Checks detached signatures against one keyring (see :func:`verify_detached`)."""

    keyring: Keyring

    def verify(self, data: bytes | Path, signature: bytes) -> str:
        """The signer's primary fingerprint, or VerificationError."""
        return verify_detached(data, signature, self.keyring)
