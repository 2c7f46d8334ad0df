"""One signer spec everywhere: ``soft:PATH``, ``gpg:FINGERPRINT[?homedir=PATH]``,
``pkcs11:URI``.

Like securesystemslib's signer URIs: the spec picks the backend from a registry
(``BACKENDS``), the rest is the backend's, and it carries the key's whole configuration
(the GnuPG home too), so nothing else about the key travels beside it.
"""

from __future__ import annotations

import subprocess
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pysequoia

from reposeal.errors import InputError, UsageError
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


@dataclass(frozen=True)
class SignerSpec:
    """A signer spec, parsed: the backend and everything it needs, in the one string (so
    the spec an enclave's config holds, or a unit's command line gives, is the whole
    configuration of its key): ``soft:PATH``, ``gpg:FINGERPRINT[?homedir=PATH]`` (the
    GnuPG home the key lives in; the agent's default without it), ``pkcs11:URI`` (RFC 7512,
    with module-path= and pin-source= in its query)."""

    backend: str
    target: str  # soft: the key file; gpg: the fingerprint (empty: the only key); pkcs11: URI
    gnupghome: Path | None = None

    @classmethod
    def parse(cls, spec: str, gnupghome: Path | None = None) -> SignerSpec:
        """``gnupghome``: a GnuPG home from elsewhere (``--gnupghome``), for a gpg: spec
        that names none."""
        backend, sep, rest = spec.partition(":")
        if not sep or backend not in BACKENDS:
            raise InputError(
                f"unknown signer {spec!r}: use soft:PATH, gpg:FINGERPRINT or pkcs11:URI"
            )
        if backend != "gpg":
            return cls(backend, spec if backend == "pkcs11" else rest)
        fpr, _, query = rest.partition("?")
        options = urllib.parse.parse_qs(query, keep_blank_values=True, strict_parsing=False)
        unknown = set(options) - {"homedir"}
        if unknown or any(len(v) != 1 or not v[0] for v in options.values()):
            raise InputError(f"signer {spec!r}: a gpg: spec takes one option, ?homedir=PATH")
        home = Path(options["homedir"][0]) if "homedir" in options else gnupghome
        return cls("gpg", fpr, home)

    def __str__(self) -> str:
        if self.backend == "pkcs11":
            return self.target
        text = f"{self.backend}:{self.target}"
        if self.gnupghome is not None:
            text += "?" + urllib.parse.urlencode({"homedir": str(self.gnupghome)})
        return text


def with_gnupghome(spec: str, gnupghome: Path | None) -> str:
    """``spec`` with ``gnupghome`` inside it (a gpg: spec that names no home of its own):
    what a command stores or passes on, so the key's whole configuration travels with it."""
    return str(SignerSpec.parse(spec, gnupghome))


class Backend(Protocol):
    """What a kind of key can do: sign, be made, show its certificate."""

    def signer(self, spec: SignerSpec) -> Signer: ...

    def generate(self, spec: SignerSpec, user_id: str, algo: str) -> str: ...

    def certificate(self, spec: SignerSpec) -> pysequoia.Cert: ...


class _Soft:
    """A key file (the private key on disk: tests, single-machine repositories)."""

    def signer(self, spec: SignerSpec) -> Signer:
        from reposeal.openpgp.soft import SoftSigner

        return SoftSigner(Path(spec.target))

    def generate(self, spec: SignerSpec, user_id: str, algo: str) -> str:
        from reposeal.openpgp.soft import generate_key_file

        path = Path(spec.target)
        if path.exists():
            raise InputError("refusing to overwrite an existing key file", path=path)
        return generate_key_file(path, user_id, algo)

    def certificate(self, spec: SignerSpec) -> pysequoia.Cert:
        from reposeal.openpgp.soft import SoftSigner

        return SoftSigner(Path(spec.target)).cert()


class _Gpg:
    """A key in gpg-agent (the real gpg signs)."""

    def signer(self, spec: SignerSpec) -> Signer:
        return GpgSigner(key=spec.target or None, homedir=spec.gnupghome)

    def generate(self, spec: SignerSpec, user_id: str, algo: str) -> str:
        return generate_key(spec.gnupghome, user_id, algo)

    def certificate(self, spec: SignerSpec) -> pysequoia.Cert:
        fpr = secret_key_fingerprint(spec.target or None, spec.gnupghome)
        home = ["--homedir", str(spec.gnupghome)] if spec.gnupghome else []
        out = subprocess.run(
            ["gpg", *home, "--batch", "--export", fpr], capture_output=True, check=True
        ).stdout
        return pysequoia.Cert.from_bytes(out)


class _Pkcs11:
    """A key in a PKCS#11 token (an HSM; SoftHSM2 in tests)."""

    def signer(self, spec: SignerSpec) -> Signer:
        from reposeal.openpgp.pkcs11 import Pkcs11Signer, Pkcs11Uri

        return Pkcs11Signer(Pkcs11Uri.parse(spec.target))

    def generate(self, spec: SignerSpec, user_id: str, algo: str) -> str:
        from reposeal.openpgp.packets import PublicKey
        from reposeal.openpgp.pkcs11 import Pkcs11Uri
        from reposeal.openpgp.pkcs11 import generate as hsm_generate

        cert = hsm_generate(Pkcs11Uri.parse(spec.target), user_id, algo)
        return PublicKey.from_certificate(cert).fingerprint.hex().upper()

    def certificate(self, spec: SignerSpec) -> pysequoia.Cert:
        from reposeal.openpgp.pkcs11 import Pkcs11Signer, Pkcs11Uri

        signer = Pkcs11Signer(Pkcs11Uri.parse(spec.target))
        return pysequoia.Cert.from_bytes(signer.certificate_bytes())


BACKENDS: dict[str, Backend] = {"soft": _Soft(), "gpg": _Gpg(), "pkcs11": _Pkcs11()}


def repo_add_spec(sign: bool, key: str | None, spec: str | None) -> str | None:
    """The signer spec a command line means: ``--signer SPEC``, or repo-add's spelling
    ``--sign [--key FPR]`` (gpg:FPR, the default key without --key); None: no signing
    (repo-add ignores --key without --sign)."""
    if spec:
        if sign or key:
            raise UsageError("use either --signer or --sign/--key, not both")
        return spec
    return f"gpg:{key or ''}" if sign else None


def signer_from_spec(spec: str, gnupghome: Path | None = None) -> Signer:
    """The signer ``spec`` names (``gnupghome``: see ``SignerSpec.parse``)."""
    parsed = SignerSpec.parse(spec, gnupghome)
    return BACKENDS[parsed.backend].signer(parsed)


def generate(spec: str, user_id: str, algo: str, gnupghome: Path | None = None) -> str:
    """Create the key a spec names; return its fingerprint."""
    if algo not in ALGORITHMS:
        raise InputError(f"unknown algorithm {algo!r}: use {' or '.join(ALGORITHMS)}")
    parsed = SignerSpec.parse(spec, gnupghome)
    return BACKENDS[parsed.backend].generate(parsed, user_id, algo)


def certificate(spec: str, gnupghome: Path | None = None) -> pysequoia.Cert:
    """The public certificate of the key a spec names."""
    parsed = SignerSpec.parse(spec, gnupghome)
    return BACKENDS[parsed.backend].certificate(parsed)


def describe(spec: str, gnupghome: Path | None = None) -> KeyInfo:
    cert = certificate(spec, gnupghome)
    exp = cert.expiration
    return KeyInfo(
        backend=SignerSpec.parse(spec).backend,
        fingerprint=cert.fingerprint.upper(),
        user_ids=[str(u) for u in cert.user_ids],
        expires=exp.isoformat() if exp else None,
        revoked=cert.is_revoked,
    )
