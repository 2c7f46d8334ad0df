"""Who signed what: verified signers per statement, and quorum counting.

A signature counts only if it verifies against the role's keyring and its key is neither
expired nor revoked (see :mod:`reposeal.openpgp.verify`); each key counts once, however
many statements or signatures it made.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from reposeal.errors import InvalidSignatureFileError, ReposealError, VerificationError
from reposeal.evidence.statements import Statement, StatementError, from_bytes
from reposeal.openpgp.packets import split_signatures
from reposeal.openpgp.verify import Keyring, verify_detached


@dataclass(frozen=True)
class Signed:
    """A parsed statement and the keyring keys whose signatures on it verified."""

    statement: Statement
    raw: bytes
    signers: frozenset[str]


def valid_signers(raw: bytes, sig_file: bytes, keyring: Keyring) -> frozenset[str]:
    """Primary fingerprints of every valid signature in ``sig_file`` over ``raw``. A packet
    whose issuer is not a keyring key is never verified, a repeated packet is verified once,
    and a key already counted is not tried again: a flood costs little, and since every
    packet naming a key is tried until one verifies, nobody can push another's signature
    out (an issuer subpacket can name anyone)."""
    import pysequoia

    try:
        packets = split_signatures(sig_file)
    except (ValueError, IndexError):
        raise InvalidSignatureFileError("not a file of OpenPGP signature packets") from None
    ours = _key_owners(keyring)
    found: set[str] = set()
    seen: set[bytes] = set()
    for sig in packets:
        if sig in seen:
            continue
        seen.add(sig)
        try:
            issuer = (pysequoia.Sig.from_bytes(sig).issuer_fingerprint or "").upper()
        except (RuntimeError, ValueError):
            continue
        owner = ours.get(issuer)
        if owner is None or owner in found:
            continue
        try:
            found.add(verify_detached(raw, sig, keyring))
        except (VerificationError, InvalidSignatureFileError):
            continue  # an invalid or foreign signature counts for nothing
    return frozenset(found)


def one_per_signer(raw: bytes, sig_file: bytes, keyring: Keyring) -> bytes:
    """The signature packets of ``sig_file`` that verify over ``raw`` by keys of
    ``keyring``, the first of each key only: what a statement's kept signature file holds."""
    import pysequoia

    try:
        packets = split_signatures(sig_file)
    except (ValueError, IndexError):
        raise InvalidSignatureFileError("not a file of OpenPGP signature packets") from None
    ours = _key_owners(keyring)
    kept: dict[str, bytes] = {}
    for sig in dict.fromkeys(packets):
        try:
            issuer = (pysequoia.Sig.from_bytes(sig).issuer_fingerprint or "").upper()
        except (RuntimeError, ValueError):
            continue
        owner = ours.get(issuer)
        if owner is None or owner in kept:
            continue
        try:
            kept[verify_detached(raw, sig, keyring)] = sig
        except (VerificationError, InvalidSignatureFileError):
            continue
    return b"".join(kept[k] for k in sorted(kept))


def _key_owners(keyring: Keyring) -> dict[str, str]:
    """Every (sub)key fingerprint of the keyring -> its certificate's primary fingerprint."""
    from reposeal.openpgp.packets import key_fingerprints

    out: dict[str, str] = {}
    for cert in keyring.certs:
        primary = cert.fingerprint.upper()
        try:
            keys = key_fingerprints(bytes(cert))
        except ValueError:
            keys = {primary}
        for fpr in keys | {primary}:
            out[fpr] = primary
    return out


def load_signed(raw: bytes, sig_file: bytes, keyring: Keyring) -> Signed:
    try:
        stmt = from_bytes(raw)
    except StatementError:
        raise
    return Signed(stmt, raw, valid_signers(raw, sig_file, keyring))


def checked_statement(
    raw: bytes,
    sigs: bytes,
    keyring: Keyring,
    kinds: tuple[type, ...],
    what: str,
    *,
    max_statement: int,
    max_signatures: int,
    unsigned: str,
) -> Signed:
    """A statement from outside, as a service takes it: within the size limits, well
    formed, of one of ``kinds``, and signed by at least one key of ``keyring``. Anything
    else is a StatementError saying which (``what`` names it; ``unsigned`` is the message
    when no signature is by a key of ``keyring``)."""
    if len(raw) > max_statement or len(sigs) > max_signatures:
        raise StatementError(f"the {what} or its signatures are too large")
    try:
        stmt = from_bytes(raw)
    except ReposealError as exc:
        raise StatementError(f"{what}: {exc.message}") from None
    if not isinstance(stmt, kinds):
        raise StatementError(f"expected a {what}, got a {stmt.kind} statement")
    try:
        signed = load_signed(raw, sigs, keyring)
    except InvalidSignatureFileError as exc:
        raise StatementError(f"{what}: {exc.message}") from None
    if not signed.signers:
        raise StatementError(unsigned)
    return signed


def count(signer_sets: Iterable[frozenset[str]], exclude: frozenset[str] = frozenset()) -> int:
    """Distinct keys across statements, minus ``exclude`` (e.g. the change's author)."""
    keys: set[str] = set()
    for s in signer_sets:
        keys |= s
    return len(keys - exclude)
