"""Checkpoints in the C2SP tlog-checkpoint format, signed as C2SP signed notes (Ed25519).

    <origin>\\n<tree size>\\n<base64 root hash>\\n
    \\n
    — <key name> <base64(4-byte key hash || Ed25519 signature)>\\n

The key hash is the first four bytes of SHA-256(name || "\\n" || 0x01 || public key). A
verifier key is written ``name+hex(key hash)+base64(0x01 || public key)``, as in Go's
golang.org/x/mod/sumdb/note, so witnesses and other tooling can read it. Pure, no I/O.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from reposeal.alpm.limits import MAX_NOTE_BYTES
from reposeal.errors import InputError, VerificationError

ALG_ED25519 = 0x01
_DASH = "\u2014 "


class CheckpointError(InputError):
    """A checkpoint or note that is malformed."""


@functools.lru_cache(maxsize=64)
def private_key(seed: bytes) -> Ed25519PrivateKey:
    """The key object for a seed, made once (a witness or log signs with the same key every
    time)."""
    return Ed25519PrivateKey.from_private_bytes(seed)


@functools.lru_cache(maxsize=256)
def public_key(public: bytes) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(public)


def _key_hash(name: str, public: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + bytes([ALG_ED25519]) + public).digest()[:4]


def check_key_name(name: str) -> str:
    if not name or any(c in name for c in " +\n\u2014") or not name.isprintable():
        raise CheckpointError(f"invalid note key name {name!r}")
    return name


@dataclass(frozen=True)
class NoteVerifier:
    name: str
    public: bytes

    @property
    def key_hash(self) -> bytes:
        return _key_hash(self.name, self.public)

    def encode(self) -> str:
        blob = base64.b64encode(bytes([ALG_ED25519]) + self.public).decode()
        return f"{self.name}+{self.key_hash.hex()}+{blob}"

    @classmethod
    def decode(cls, text: str) -> NoteVerifier:
        try:
            name, hash_hex, blob = text.strip().split("+", 2)
            raw = base64.b64decode(blob, validate=True)
        except (ValueError, binascii.Error):
            raise CheckpointError("verifier key must be name+hash+base64") from None
        if len(raw) != 33 or raw[0] != ALG_ED25519:
            raise CheckpointError("only Ed25519 note verifier keys are supported")
        verifier = cls(check_key_name(name), raw[1:])
        if verifier.key_hash.hex() != hash_hex:
            raise CheckpointError("verifier key hash does not match its name and key")
        return verifier


@dataclass(frozen=True)
class NoteSigner:
    name: str
    seed: bytes  # the 32-byte Ed25519 private key

    @classmethod
    def generate(cls, name: str) -> NoteSigner:
        from cryptography.hazmat.primitives import serialization

        key = Ed25519PrivateKey.generate()
        seed = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        return cls(check_key_name(name), seed)

    @property
    def verifier(self) -> NoteVerifier:
        from cryptography.hazmat.primitives import serialization

        public = (
            private_key(self.seed)
            .public_key()
            .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        )
        return NoteVerifier(self.name, public)

    def encode(self) -> str:
        """``PRIVATE+KEY+name+hash+base64(0x01||seed)``, Go's note private key format."""
        blob = base64.b64encode(bytes([ALG_ED25519]) + self.seed).decode()
        return f"PRIVATE+KEY+{self.name}+{self.verifier.key_hash.hex()}+{blob}"

    @classmethod
    def decode(cls, text: str) -> NoteSigner:
        parts = text.strip().split("+", 4)
        if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
            raise CheckpointError("not a note private key (PRIVATE+KEY+name+hash+base64)")
        try:
            raw = base64.b64decode(parts[4], validate=True)
        except binascii.Error:
            raise CheckpointError("note private key is not base64") from None
        if len(raw) != 33 or raw[0] != ALG_ED25519:
            raise CheckpointError("only Ed25519 note keys are supported")
        signer = cls(check_key_name(parts[2]), raw[1:])
        if signer.verifier.key_hash.hex() != parts[3]:
            raise CheckpointError("note private key hash does not match")
        return signer

    def sign(self, text: str) -> str:
        """The signed note: ``text`` (ending in a newline), a blank line, the signature."""
        _check_text(text)
        sig = private_key(self.seed).sign(text.encode())
        blob = base64.b64encode(self.verifier.key_hash + sig).decode()
        return f"{text}\n{_DASH}{self.name} {blob}\n"


def _check_text(text: str, *, blank_lines: bool = False) -> None:
    """Text we sign has no blank lines; text we open may (C2SP signed-note splits a note at
    its last blank line, as Go's note package does)."""
    if not text.endswith("\n") or (not blank_lines and "\n\n" in text):
        raise CheckpointError("note text must end in one newline and have no blank lines")
    if any(not (c.isprintable() or c == "\n") for c in text):
        raise CheckpointError("note text has control characters")


def split_note(note: bytes) -> tuple[str, list[tuple[str, bytes]]]:
    """A signed note's text and its signature lines, (key name, decoded signature) each,
    checked for form only (C2SP signed-note)."""
    text, signatures = _split(note)
    return text, list(signatures)


@functools.lru_cache(maxsize=16)  # a witness or client looks at the same note several times
def _split(note: bytes) -> tuple[str, tuple[tuple[str, bytes], ...]]:
    if len(note) > MAX_NOTE_BYTES:
        raise CheckpointError("note is too large")
    try:
        whole = note.decode("utf-8")
    except UnicodeDecodeError:
        raise CheckpointError("note is not UTF-8") from None
    text, sep, sigs = whole.rpartition("\n\n")
    if not sep or not sigs.endswith("\n"):
        raise CheckpointError("note has no signature block")
    text += "\n"
    if text == "\n":
        raise CheckpointError("note has no text")
    _check_text(text, blank_lines=True)
    signatures = []
    for line in sigs[:-1].split("\n"):  # every line is a signature, or the note is malformed
        if not line.startswith(_DASH):
            raise CheckpointError(f"malformed note: {line[:40]!r} is not a signature line")
        name, _, blob = line[len(_DASH) :].partition(" ")
        if not name or any(c.isspace() or c == "+" for c in name):
            raise CheckpointError(f"malformed note: bad signer name {name[:40]!r}")
        try:
            raw = base64.b64decode(blob, validate=True)
        except binascii.Error:
            raise CheckpointError("malformed note: a signature is not base64") from None
        if len(raw) < 5:
            raise CheckpointError("malformed note: a signature is too short")
        signatures.append((name, raw))
    return text, tuple(signatures)


def signature_line(name: str, raw: bytes) -> str:
    return f"{_DASH}{name} {base64.b64encode(raw).decode()}\n"


def open_note(note: bytes, verifier: NoteVerifier) -> str:
    """Return the text of a signed note if ``verifier`` signed it; raise otherwise."""
    text, signatures = split_note(note)
    for name, raw in signatures:
        if name != verifier.name or raw[:4] != verifier.key_hash:
            continue  # someone else's signature (a witness, say)
        try:
            public_key(verifier.public).verify(raw[4:], text.encode())
        except InvalidSignature:
            raise VerificationError(f"note signature by {name} is invalid") from None
        return text
    raise VerificationError(f"note is not signed by {verifier.name}")


def signed_by_only(note: bytes, verifier: NoteVerifier) -> bytes:
    """The note with only ``verifier``'s signature lines: the bytes the log signed, before
    witnesses added their cosignatures (what the repository key's OpenPGP signature covers)."""
    text, signatures = split_note(note)
    own = [
        signature_line(n, raw)
        for n, raw in signatures
        if n == verifier.name and raw[:4] == verifier.key_hash
    ]
    return (text + "\n" + "".join(own)).encode()


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def text(self) -> str:
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode()]
        return "\n".join([*lines, *self.extensions]) + "\n"

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        lines = text.split("\n")
        if len(lines) < 4 or lines[-1] != "":
            raise CheckpointError("a checkpoint has origin, size and root lines")
        origin, size_text, root_text, *ext = lines[:-1]
        if not size_text.isdigit() or (size_text != "0" and size_text.startswith("0")):
            raise CheckpointError(f"bad tree size {size_text!r}")
        try:
            root = base64.b64decode(root_text, validate=True)
        except binascii.Error:
            raise CheckpointError("root hash is not base64") from None
        if len(root) != 32 or not origin:
            raise CheckpointError("bad root hash or empty origin")
        return cls(origin, int(size_text), root, tuple(ext))


def verify_checkpoint(note: bytes, verifier: NoteVerifier, origin: str) -> Checkpoint:
    cp = Checkpoint.parse(open_note(note, verifier))
    if cp.origin != origin:
        raise VerificationError(f"checkpoint is for log {cp.origin!r}, not {origin!r}")
    return cp
