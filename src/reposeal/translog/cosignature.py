"""Witness cosignatures, C2SP tlog-cosignature (Ed25519, ``cosignature/v1``). Pure, no I/O.

A cosignature is a signed-note signature line on a checkpoint:

    — <witness name> base64(key ID || u64 timestamp (big-endian) || Ed25519 signature)

over ``cosignature/v1\\ntime <timestamp>\\n`` followed by the checkpoint's text. The key ID is
SHA-256(name || "\\n" || 0x04 || public key)[:4]; keys are written as vkeys
``name+hex(key ID)+base64(0x04 || public key)``, as the public witness network does.
A cosignature says: at that time, this was the largest tree of that log the witness had seen
consistent with every one it saw before.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from reposeal.alpm.limits import MAX_TIMESTAMP
from reposeal.errors import VerificationError
from reposeal.translog.checkpoint import (
    CheckpointError,
    check_key_name,
    private_key,
    public_key,
    signature_line,
    split_note,
)

ALG_COSIGNATURE_V1 = 0x04


def _key_id(name: str, public: bytes) -> bytes:
    material = name.encode() + b"\n" + bytes([ALG_COSIGNATURE_V1]) + public
    return hashlib.sha256(material).digest()[:4]


def signed_message(text: str, timestamp: int) -> bytes:
    """What a cosignature/v1 signs: the header, the time, the checkpoint text."""
    return f"cosignature/v1\ntime {timestamp}\n{text}".encode()


@dataclass(frozen=True)
class CosignerKey:
    """A witness's public key, as policies and clients name it."""

    name: str
    public: bytes

    @property
    def key_id(self) -> bytes:
        return _key_id(self.name, self.public)

    def encode(self) -> str:
        blob = base64.b64encode(bytes([ALG_COSIGNATURE_V1]) + self.public).decode()
        return f"{self.name}+{self.key_id.hex()}+{blob}"

    @classmethod
    def decode(cls, text: str) -> CosignerKey:
        try:
            name, id_hex, blob = text.strip().split("+", 2)
            raw = base64.b64decode(blob, validate=True)
        except (ValueError, binascii.Error):
            raise CheckpointError(f"a witness key is name+id+base64, not {text[:60]!r}") from None
        if len(raw) != 33 or raw[0] != ALG_COSIGNATURE_V1:
            raise CheckpointError("a witness key must be an Ed25519 cosignature/v1 vkey (0x04)")
        key = cls(check_key_name(name), raw[1:])
        if key.key_id.hex() != id_hex:
            raise CheckpointError(f"witness key {name}: the key ID does not match name and key")
        return key

    def verify(self, text: str, raw: bytes) -> int:
        """The timestamp of a cosignature (decoded line body) by this key on ``text``."""
        if len(raw) != 4 + 8 + 64 or raw[:4] != self.key_id:
            raise VerificationError(f"a cosignature by {self.name} is malformed")
        (timestamp,) = struct.unpack(">Q", raw[4:12])
        if timestamp == 0 or timestamp > MAX_TIMESTAMP:
            raise VerificationError(f"a cosignature by {self.name} has no valid timestamp")
        try:
            public_key(self.public).verify(raw[12:], signed_message(text, timestamp))
        except InvalidSignature:
            raise VerificationError(f"the cosignature by {self.name} is invalid") from None
        return int(timestamp)


@dataclass(frozen=True)
class Cosigner:
    """A witness's private key (the 32-byte Ed25519 seed)."""

    name: str
    seed: bytes

    @classmethod
    def generate(cls, name: str) -> Cosigner:
        seed = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        return cls(check_key_name(name), seed)

    @property
    def key(self) -> CosignerKey:
        public = (
            private_key(self.seed)
            .public_key()
            .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        )
        return CosignerKey(self.name, public)

    def encode(self) -> str:
        """``PRIVATE+KEY+name+id+base64(0x04 || seed)``."""
        blob = base64.b64encode(bytes([ALG_COSIGNATURE_V1]) + self.seed).decode()
        return f"PRIVATE+KEY+{self.name}+{self.key.key_id.hex()}+{blob}"

    @classmethod
    def decode(cls, text: str) -> Cosigner:
        parts = text.strip().split("+", 4)
        if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
            raise CheckpointError("not a witness private key (PRIVATE+KEY+name+id+base64)")
        try:
            raw = base64.b64decode(parts[4], validate=True)
        except binascii.Error:
            raise CheckpointError("the witness private key is not base64") from None
        if len(raw) != 33 or raw[0] != ALG_COSIGNATURE_V1:
            raise CheckpointError("only Ed25519 cosignature/v1 witness keys are supported")
        signer = cls(check_key_name(parts[2]), raw[1:])
        if signer.key.key_id.hex() != parts[3]:
            raise CheckpointError("the witness private key's ID does not match")
        return signer

    def cosign(self, text: str, timestamp: int) -> str:
        """The signature line of a cosignature on checkpoint ``text`` at ``timestamp``."""
        if not 0 < timestamp <= MAX_TIMESTAMP:
            raise ValueError("a cosignature needs a positive timestamp")
        sig = private_key(self.seed).sign(signed_message(text, timestamp))
        return signature_line(self.name, self.key.key_id + struct.pack(">Q", timestamp) + sig)


def cosignatures(note: bytes, keys: Iterable[CosignerKey]) -> dict[str, int]:
    """Witness name -> timestamp of its valid cosignature on ``note`` (the newest, if it
    cosigned more than once), for the witnesses ``keys`` names. Lines of unknown keys are
    ignored, as the spec says; a line that matches a known key but does not verify makes the
    note malformed and is refused."""
    text, lines = split_note(note)
    by_id = {(k.name, k.key_id): k for k in keys}
    found: dict[str, int] = {}
    for name, raw in lines:
        key = by_id.get((name, raw[:4]))
        if key is None:
            continue
        stamp = key.verify(text, raw)
        found[name] = max(stamp, found.get(name, 0))
    return found


def add_cosignatures(note: bytes, lines: Iterable[str]) -> bytes:
    """The note with witness signature lines appended (each once)."""
    have = note.decode()
    for line in lines:
        if line not in have:
            have += line
    return have.encode()
