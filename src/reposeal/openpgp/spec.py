"""One signer spec everywhere: ``soft:PATH``, ``gpg:FINGERPRINT``, ``pkcs11:URI``.

Like securesystemslib's signer URIs: the spec picks the backend, the rest is the backend's.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pysequoia

from reposeal.errors import InputError
from reposeal.openpgp.gpg import GpgSigner, generate_key, secret_key_fingerprint
from reposeal.openpgp.signer import Signer

ALGORITHMS = ("ed25519", "rsa4096")


@dataclass(frozen=True)
class KeyInfo:
    backend: str
    fingerprint: str
    user_ids: list[str]
    expires: str | None
    revoked: bool


def _split(spec: str) -> tuple[str, str]:
    backend, sep, rest = spec.partition(":")
    if not sep or backend not in ("soft", "gpg", "pkcs11"):
        raise InputError(f"unknown signer {spec!r}: use soft:PATH, gpg:FINGERPRINT or pkcs11:URI")
    return backend, rest


def signer_from_spec(spec: str, gnupghome: Path | None = None) -> Signer:
    backend, rest = _split(spec)
    if backend == "soft":
        from reposeal.openpgp.soft import SoftSigner

        return SoftSigner(Path(rest))
    if backend == "gpg":
        return GpgSigner(key=rest or None, homedir=gnupghome)
    from reposeal.openpgp.pkcs11 import Pkcs11Signer, Pkcs11Uri

    return Pkcs11Signer(Pkcs11Uri.parse(spec))


def generate(spec: str, user_id: str, algo: str, gnupghome: Path | None = None) -> str:
    """Create the key a spec names; return its fingerprint."""
    if algo not in ALGORITHMS:
        raise InputError(f"unknown algorithm {algo!r}: use {' or '.join(ALGORITHMS)}")
    backend, rest = _split(spec)
    if backend == "soft":
        from reposeal.openpgp.soft import generate_key_file

        path = Path(rest)
        if path.exists():
            raise InputError("refusing to overwrite an existing key file", path=path)
        return generate_key_file(path, user_id, algo)
    if backend == "gpg":
        return generate_key(gnupghome, user_id, algo)
    from reposeal.openpgp.packets import PublicKey
    from reposeal.openpgp.pkcs11 import Pkcs11Uri
    from reposeal.openpgp.pkcs11 import generate as hsm_generate

    cert = hsm_generate(Pkcs11Uri.parse(spec), user_id, algo)
    return PublicKey.from_certificate(cert).fingerprint.hex().upper()


def certificate(spec: str, gnupghome: Path | None = None) -> pysequoia.Cert:
    """The public certificate of the key a spec names."""
    backend, rest = _split(spec)
    if backend == "soft":
        from reposeal.openpgp.soft import SoftSigner

        return SoftSigner(Path(rest)).cert()
    if backend == "gpg":
        fpr = secret_key_fingerprint(rest or None, gnupghome)
        home = ["--homedir", str(gnupghome)] if gnupghome else []
        out = subprocess.run(
            ["gpg", *home, "--batch", "--export", fpr], capture_output=True, check=True
        ).stdout
        return pysequoia.Cert.from_bytes(out)
    from reposeal.openpgp.pkcs11 import Pkcs11Signer, Pkcs11Uri

    return pysequoia.Cert.from_bytes(Pkcs11Signer(Pkcs11Uri.parse(spec)).certificate_bytes())


def describe(spec: str, gnupghome: Path | None = None) -> KeyInfo:
    cert = certificate(spec, gnupghome)
    exp = cert.expiration
    return KeyInfo(
        backend=_split(spec)[0],
        fingerprint=cert.fingerprint.upper(),
        user_ids=[str(u) for u in cert.user_ids],
        expires=exp.isoformat() if exp else None,
        revoked=cert.is_revoked,
    )
