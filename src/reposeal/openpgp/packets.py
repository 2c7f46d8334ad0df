"""The few OpenPGP v4 packets we build by hand (RFC 4880 §4, §5.2, §5.5, §12.2).

No maintained Python OpenPGP library accepts an external signer, so a key that lives in an
HSM needs this: a public-key packet, a user ID, and signatures wrapped around the raw
signature the token computes over our hash. Everything here is pure; the result is checked
by gpg, sq, pysequoia and pacman in the tests.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

ALGO_RSA = 1
ALGO_EDDSA = 22  # "EdDSA legacy" for v4 keys, the one gpg 2.2 and pacman understand
HASH_SHA256 = 8
HASH_SHA512 = 10
ED25519_OID = bytes.fromhex("2B06010401DA470F01")  # 1.3.6.1.4.1.11591.15.1

SIG_BINARY = 0x00
SIG_POSITIVE_CERT = 0x13

SUB_CREATED = 2
SUB_EXPIRES = 3  # signature expiration
SUB_KEY_EXPIRES = 9
SUB_PREF_HASH = 21
SUB_ISSUER = 16
SUB_KEY_FLAGS = 27
SUB_ISSUER_FPR = 33
SUB_NOTATION = 20

KEY_FLAG_CERTIFY = 0x01
KEY_FLAG_SIGN = 0x02

# DER DigestInfo prefixes for RSA PKCS#1 v1.5 (RFC 4880 §5.2.2)
DIGEST_INFO = {
    HASH_SHA256: bytes.fromhex("3031300d060960864801650304020105000420"),
    HASH_SHA512: bytes.fromhex("3051300d060960864801650304020305000440"),
}
_HASHES = {HASH_SHA256: "sha256", HASH_SHA512: "sha512"}


def mpi(value: bytes) -> bytes:
    """A multiprecision integer: bit count, then the big-endian bytes without leading zeros."""
    stripped = value.lstrip(b"\0")
    bits = len(stripped) * 8 - (8 - stripped[0].bit_length()) if stripped else 0
    return struct.pack(">H", bits) + stripped


def packet(tag: int, body: bytes) -> bytes:
    """A new-format packet header (RFC 4880 §4.2.2) and the body."""
    n = len(body)
    if n < 192:
        length = bytes([n])
    elif n < 8384:
        n -= 192
        length = bytes([(n >> 8) + 192, n & 0xFF])
    else:
        length = b"\xff" + struct.pack(">I", n)
    return bytes([0xC0 | tag]) + length + body


def subpacket(kind: int, data: bytes, critical: bool = False) -> bytes:
    body = bytes([kind | (0x80 if critical else 0)]) + data
    n = len(body)
    if n < 192:
        return bytes([n]) + body
    if n < 8384:
        n -= 192
        return bytes([(n >> 8) + 192, n & 0xFF]) + body
    return b"\xff" + struct.pack(">I", n) + body


@dataclass(frozen=True, slots=True)
class PublicKey:
    """A v4 primary public key: what a token's key looks like in OpenPGP."""

    algorithm: int
    created: int
    material: bytes  # algorithm-specific public fields (RFC 4880 §5.5.2)

    @classmethod
    def ed25519(cls, public: bytes, created: int) -> PublicKey:
        if len(public) != 32:
            raise ValueError("an Ed25519 public key has 32 bytes")
        material = bytes([len(ED25519_OID)]) + ED25519_OID + mpi(b"\x40" + public)
        return cls(ALGO_EDDSA, created, material)

    @classmethod
    def rsa(cls, modulus: bytes, exponent: bytes, created: int) -> PublicKey:
        return cls(ALGO_RSA, created, mpi(modulus) + mpi(exponent))

    @classmethod
    def from_certificate(cls, cert: bytes) -> PublicKey:
        """The primary key of a binary certificate (its first packet, as we write it)."""
        if len(cert) < 8 or cert[0] != 0xC6:
            raise ValueError("not a binary OpenPGP certificate starting with a public key")
        first = cert[1]
        if first < 192:
            start, length = 2, first
        elif first < 224:
            start, length = 3, ((first - 192) << 8) + cert[2] + 192
        else:
            raise ValueError("unsupported public key packet length")
        body = cert[start : start + length]
        if len(body) != length or body[0] != 4:
            raise ValueError("not a v4 public key packet")
        return cls(body[5], struct.unpack(">I", body[1:5])[0], body[6:])

    @property
    def body(self) -> bytes:
        return (
            bytes([4]) + struct.pack(">I", self.created) + bytes([self.algorithm]) + self.material
        )

    @property
    def fingerprint(self) -> bytes:
        body = self.body
        return hashlib.sha1(b"\x99" + struct.pack(">H", len(body)) + body).digest()  # noqa: S324

    @property
    def key_id(self) -> bytes:
        return self.fingerprint[-8:]

    def hash_prefix(self) -> bytes:
        """What a certification hashes for this key (0x99, length, body)."""
        body = self.body
        return b"\x99" + struct.pack(">H", len(body)) + body


# A raw signer turns a digest into the algorithm's signature MPIs' bytes:
# (r, s) for EdDSA, (m^d mod n,) for RSA. It is the only thing a token must do.
RawSign = Callable[[bytes], Sequence[bytes]]


def to_be_signed(algorithm: int, hash_algo: int, digest: bytes) -> bytes:
    """The bytes handed to the token: the digest (EdDSA) or DigestInfo||digest (RSA)."""
    if algorithm == ALGO_RSA:
        return DIGEST_INFO[hash_algo] + digest
    return digest


def signature(
    key: PublicKey,
    sig_type: int,
    hashed_data: Callable[[hashlib._Hash], None],
    raw_sign: RawSign,
    *,
    created: int,
    hash_algo: int = HASH_SHA512,
    extra_hashed: bytes = b"",
) -> bytes:
    """A complete v4 signature packet.

    ``hashed_data(h)`` feeds the signed material (document or key + user ID) into the hash
    first; then the hashed part and trailer follow as RFC 4880 §5.2.4 prescribes.
    """
    hashed_sub = (
        subpacket(SUB_ISSUER_FPR, b"\x04" + key.fingerprint)
        + subpacket(SUB_CREATED, struct.pack(">I", created))
        + extra_hashed
    )
    hashed_part = (
        bytes([4, sig_type, key.algorithm, hash_algo])
        + struct.pack(">H", len(hashed_sub))
        + hashed_sub
    )
    h = hashlib.new(_HASHES[hash_algo])
    hashed_data(h)
    h.update(hashed_part)
    h.update(b"\x04\xff" + struct.pack(">I", len(hashed_part)))
    digest = h.digest()
    parts = raw_sign(to_be_signed(key.algorithm, hash_algo, digest))
    unhashed = subpacket(SUB_ISSUER, key.key_id)
    body = (
        hashed_part
        + struct.pack(">H", len(unhashed))
        + unhashed
        + digest[:2]
        + b"".join(mpi(p) for p in parts)
    )
    return packet(2, body)


def document_subpackets(expires_in: int | None, notations: Sequence[tuple[str, str]]) -> bytes:
    """Hashed subpackets for a document signature: expiration and notations (§5.2.3.10, .16)."""
    out = b""
    if expires_in is not None:
        out += subpacket(SUB_EXPIRES, struct.pack(">I", expires_in), critical=True)
    for name, value in notations:
        n, v = name.encode(), value.encode()
        out += subpacket(SUB_NOTATION, b"\x80\0\0\0" + struct.pack(">HH", len(n), len(v)) + n + v)
    return out


def certificate(
    key: PublicKey,
    user_id: str,
    raw_sign: RawSign,
    *,
    created: int,
    expires_after: int | None = None,
) -> bytes:
    """A transferable public key: key packet, user ID, positive self-certification."""
    uid = user_id.encode("utf-8")
    extra = subpacket(SUB_KEY_FLAGS, bytes([KEY_FLAG_CERTIFY | KEY_FLAG_SIGN])) + subpacket(
        SUB_PREF_HASH, bytes([HASH_SHA512, HASH_SHA256])
    )
    if expires_after is not None:
        extra += subpacket(SUB_KEY_EXPIRES, struct.pack(">I", expires_after))

    def feed(h: hashlib._Hash) -> None:
        h.update(key.hash_prefix())
        h.update(b"\xb4" + struct.pack(">I", len(uid)) + uid)

    selfsig = signature(key, SIG_POSITIVE_CERT, feed, raw_sign, created=created, extra_hashed=extra)
    return packet(6, key.body) + packet(13, uid) + selfsig


def iter_packets(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(tag, body) of each packet in a binary OpenPGP stream (old and new formats); any
    malformed or truncated header or body is a ValueError."""
    pos = 0
    while pos < len(data):
        head = data[pos]
        if not head & 0x80:
            raise ValueError("not an OpenPGP packet")
        if head & 0x40:  # new format
            tag = head & 0x3F
            if pos + 1 >= len(data):
                raise ValueError("truncated packet header")
            first = data[pos + 1]
            if first < 192:
                start, length = pos + 2, first
            elif first < 224:
                if pos + 2 >= len(data):
                    raise ValueError("truncated packet header")
                start, length = pos + 3, ((first - 192) << 8) + data[pos + 2] + 192
            elif first == 255:
                if pos + 6 > len(data):
                    raise ValueError("truncated packet header")
                start, length = pos + 6, struct.unpack(">I", data[pos + 2 : pos + 6])[0]
            else:
                raise ValueError("partial body lengths are not used in keys")
        else:
            tag = (head >> 2) & 0x0F
            size = {0: 1, 1: 2, 2: 4}.get(head & 3)
            if size is None:
                raise ValueError("indeterminate packet length")
            start = pos + 1 + size
            if start > len(data):
                raise ValueError("truncated packet header")
            length = int.from_bytes(data[pos + 1 : start], "big")
        if start + length > len(data):
            raise ValueError("truncated packet")
        yield tag, data[start : start + length]
        pos = start + length


def key_fingerprints(cert: bytes) -> set[str]:
    """Uppercase fingerprints of the primary key and every subkey of a v4 certificate."""
    out = set()
    for tag, body in iter_packets(cert):
        if tag in (6, 14) and body[:1] == b"\x04":
            prefix = b"\x99" + struct.pack(">H", len(body))
            out.add(hashlib.sha1(prefix + body).hexdigest().upper())  # noqa: S324
    return out


KEY_REVOCATION, SUBKEY_REVOCATION = 0x20, 0x28


def revoked_keys(cert: bytes) -> set[str]:
    """Uppercase fingerprints of the keys of a v4 certificate that carry a revocation
    signature, of any reason: gpg (and so pacman, through gpgme) takes a key with any
    revocation as revoked, a "soft" one (superseded, retired) included, whatever the time
    the data was signed. A revoked primary key revokes every subkey."""
    out: set[str] = set()
    primary: str | None = None
    current: str | None = None
    for tag, body in iter_packets(cert):
        if tag in (6, 14) and body[:1] == b"\x04":
            prefix = b"\x99" + struct.pack(">H", len(body))
            current = hashlib.sha1(prefix + body).hexdigest().upper()  # noqa: S324
            if tag == 6:
                primary = current
        elif tag == 2 and len(body) > 2:
            kind = body[1] if body[0] == 4 else body[2] if body[0] == 3 else None
            if kind == KEY_REVOCATION and primary is not None:
                out.add(primary)
            elif kind == SUBKEY_REVOCATION and current is not None:
                out.add(current)
    if primary in out:
        out |= key_fingerprints(cert)
    return out


@dataclass(frozen=True, slots=True)
class SecretKey:
    """An unencrypted v4 secret (sub)key: its public half and the secret MPIs."""

    public: PublicKey
    secret_mpis: tuple[bytes, ...]


def _read_mpi(body: bytes, pos: int) -> tuple[bytes, int]:
    bits = struct.unpack(">H", body[pos : pos + 2])[0]
    end = pos + 2 + (bits + 7) // 8
    if end > len(body):
        raise ValueError("truncated MPI")
    return body[pos + 2 : end], end


def parse_secret_key(body: bytes) -> SecretKey:
    """Parse a v4 secret key packet body (RFC 4880 §5.5.3) that is not password-protected."""
    if len(body) < 8 or body[0] != 4:
        raise ValueError("not a v4 secret key")
    created = struct.unpack(">I", body[1:5])[0]
    algorithm = body[5]
    pos = 6
    if algorithm == ALGO_EDDSA:
        oid_len = body[pos]
        oid = body[pos + 1 : pos + 1 + oid_len]
        if oid != ED25519_OID:
            raise ValueError("only Ed25519 EdDSA keys are supported")
        pos += 1 + oid_len
        _, pos = _read_mpi(body, pos)
        count = 1
    elif algorithm == ALGO_RSA:
        for _ in range(2):
            _, pos = _read_mpi(body, pos)
        count = 4  # d, p, q, u
    else:
        raise ValueError(f"unsupported public-key algorithm {algorithm}")
    public = PublicKey(algorithm, created, body[6:pos])
    if body[pos] != 0:
        raise ValueError("the secret key is password-protected")
    pos += 1
    mpis = []
    for _ in range(count):
        value, pos = _read_mpi(body, pos)
        mpis.append(value)
    return SecretKey(public, tuple(mpis))


def split_signatures(data: bytes) -> list[bytes]:
    """Each signature packet of a .sig file (several signers may share one file)."""
    out = []
    for tag, body in iter_packets(data):
        if tag != 2:
            raise ValueError(f"a signature file holds a packet of type {tag}")
        out.append(packet(2, body))  # re-framed in the new format; the body is what is signed
    return out
