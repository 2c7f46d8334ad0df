"""The ``pkcs11`` backend: the private key never leaves a PKCS#11 token (an HSM).

The token only ever sees a hash; the OpenPGP packets around its raw signature are built by
:mod:`reposeal.openpgp.packets`. The certificate made at key generation is stored on the
token beside the key (a data object), so the token alone is the whole identity.

Signer spec: an RFC 7512 URI, e.g.
``pkcs11:token=repo;object=repo-key?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/reposeal/pin``.
The PIN comes from ``pin-source`` or ``$REPOSEAL_PKCS11_PIN``, never from the command line.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import unquote_to_bytes

from reposeal.errors import InputError, SigningError, ToolMissingError
from reposeal.openpgp import packets
from reposeal.openpgp.signer import NO_OPTIONS, SignOptions

PIN_ENV = "REPOSEAL_PKCS11_PIN"
CERT_SUFFIX = ".openpgp-cert"
_PATH_ATTRS = {
    "token",
    "object",
    "id",
    "type",
    "manufacturer",
    "model",
    "serial",
    "slot-id",
    "library-manufacturer",
    "library-description",
    "library-version",
    "slot-description",
    "slot-manufacturer",
}
_QUERY_ATTRS = {"module-path", "module-name", "pin-source", "pin-value"}


@dataclass(frozen=True)
class Pkcs11Uri:
    """The parts of an RFC 7512 URI that name a key on a token."""

    token: str
    object: str | None
    id: bytes | None
    module_path: str
    pin_source: str | None

    @classmethod
    def parse(cls, uri: str) -> Pkcs11Uri:
        if not uri.startswith("pkcs11:"):
            raise InputError(f"not a PKCS#11 URI: {uri!r}")
        path, _, query = uri[len("pkcs11:") :].partition("?")
        attrs: dict[str, bytes] = {}
        for part, allowed, sep in ((path, _PATH_ATTRS, ";"), (query, _QUERY_ATTRS, "&")):
            for item in filter(None, part.split(sep)):
                key, eq, value = item.partition("=")
                if not eq or key not in allowed:
                    raise InputError(f"PKCS#11 URI: unknown or malformed attribute {item!r}")
                if key in attrs:
                    raise InputError(f"PKCS#11 URI: attribute {key!r} given twice")
                attrs[key] = unquote_to_bytes(value)
        if "pin-value" in attrs:
            raise InputError(
                "PKCS#11 URI: pin-value is refused (it would show in process lists and logs); "
                f"use pin-source=file:PATH or ${PIN_ENV}"
            )
        if "token" not in attrs:
            raise InputError("PKCS#11 URI: token=LABEL is required")
        if "module-path" not in attrs:
            raise InputError(
                "PKCS#11 URI: module-path=/path/to/module.so is required "
                "(SoftHSM2: /usr/lib/softhsm/libsofthsm2.so)"
            )
        if "object" not in attrs and "id" not in attrs:
            raise InputError("PKCS#11 URI: name the key with object=LABEL or id=%xx...")
        return cls(
            token=attrs["token"].decode(),
            object=attrs["object"].decode() if "object" in attrs else None,
            id=attrs.get("id"),
            module_path=attrs["module-path"].decode(),
            pin_source=attrs["pin-source"].decode() if "pin-source" in attrs else None,
        )

    def pin(self) -> str:
        if self.pin_source is not None:
            source = self.pin_source.removeprefix("file:")
            try:
                return Path(source).read_text().strip()
            except OSError as exc:
                raise ToolMissingError(
                    f"cannot read the PIN: {exc.strerror}", path=source
                ) from None
        pin = os.environ.get(PIN_ENV)
        if not pin:
            raise ToolMissingError(f"no PIN: add pin-source=file:PATH to the URI or set ${PIN_ENV}")
        return pin


def _lib(module_path: str) -> Any:
    import pkcs11

    if not Path(module_path).is_file():
        raise ToolMissingError(f"PKCS#11 module not found: {module_path}")
    return pkcs11.lib(module_path)


@contextmanager
def _session(uri: Pkcs11Uri, rw: bool = False) -> Iterator[Any]:
    import pkcs11.exceptions as px

    lib = _lib(uri.module_path)
    try:
        token = lib.get_token(token_label=uri.token)
    except (px.NoSuchToken, px.MultipleTokensReturned):
        raise ToolMissingError(
            f"PKCS#11 token {uri.token!r} not found: is the HSM connected and the token "
            "initialised (softhsm2-util --init-token ...)?"
        ) from None
    try:
        session = token.open(rw=rw, user_pin=uri.pin())
    except px.PinIncorrect:
        raise SigningError(
            f"wrong PIN for token {uri.token!r} (repeated failures lock the token)"
        ) from None
    except px.PinLocked:
        raise SigningError(
            f"the PIN of token {uri.token!r} is locked; ask its security officer"
        ) from None
    except px.PKCS11Error as exc:
        raise SigningError(f"cannot open token {uri.token!r}: {type(exc).__name__}") from None
    try:
        yield session
    finally:
        session.close()


def _find(session: Any, uri: Pkcs11Uri, object_class: Any) -> Any:
    from pkcs11 import Attribute

    query: dict[Any, Any] = {Attribute.CLASS: object_class}
    if uri.object is not None:
        query[Attribute.LABEL] = uri.object
    if uri.id is not None:
        query[Attribute.ID] = uri.id
    found = list(session.get_objects(query))
    if len(found) != 1:
        what = uri.object or (uri.id.hex() if uri.id else "?")
        raise ToolMissingError(
            f"{'no' if not found else 'more than one'} key {what!r} on token {uri.token!r}"
        )
    return found[0]


def _raw_signer(private: Any, algorithm: int) -> packets.RawSign:
    from pkcs11 import Mechanism

    def sign(data: bytes) -> Sequence[bytes]:
        if algorithm == packets.ALGO_EDDSA:
            sig = private.sign(data, mechanism=Mechanism.EDDSA)
            return (sig[:32], sig[32:])
        return (private.sign(data, mechanism=Mechanism.RSA_PKCS),)

    return sign


def generate(uri: Pkcs11Uri, user_id: str, algo: str) -> bytes:
    """Create a non-extractable key pair on the token and its self-signed certificate."""
    from pkcs11 import Attribute, KeyType, MechanismFlag, ObjectClass
    from pkcs11.util.ec import encode_named_curve_parameters

    label = uri.object or "reposeal"
    key_id = uri.id or secrets.token_bytes(8)
    created = int(time.time())
    private_template = {Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False}
    with _session(uri, rw=True) as session:
        existing = list(session.get_objects({Attribute.LABEL: label}))
        if existing:
            raise InputError(f"token {uri.token!r} already holds an object labelled {label!r}")
        if algo == "ed25519":
            params = session.create_domain_parameters(
                KeyType.EC_EDWARDS,
                {Attribute.EC_PARAMS: encode_named_curve_parameters("1.3.101.112")},
                local=True,
            )
            pub, priv = params.generate_keypair(
                store=True,
                label=label,
                id=key_id,
                private_template=private_template,
                capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
            )
            point = bytes(pub[Attribute.EC_POINT])
            raw = point[2:] if len(point) == 34 and point[0] == 0x04 else point
            key = packets.PublicKey.ed25519(raw, created)
            algorithm = packets.ALGO_EDDSA
        elif algo == "rsa4096":
            pub, priv = session.generate_keypair(
                KeyType.RSA,
                4096,
                store=True,
                label=label,
                id=key_id,
                private_template=private_template,
                capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
            )
            key = packets.PublicKey.rsa(
                bytes(pub[Attribute.MODULUS]), bytes(pub[Attribute.PUBLIC_EXPONENT]), created
            )
            algorithm = packets.ALGO_RSA
        else:
            raise InputError(f"unknown algorithm {algo!r}: use ed25519 or rsa4096")
        cert = packets.certificate(key, user_id, _raw_signer(priv, algorithm), created=created)
        session.create_object(
            {
                Attribute.CLASS: ObjectClass.DATA,
                Attribute.TOKEN: True,
                Attribute.PRIVATE: False,
                Attribute.LABEL: label + CERT_SUFFIX,
                Attribute.APPLICATION: "reposeal",
                Attribute.VALUE: cert,
            }
        )
    return cert


@dataclass
class Pkcs11Signer:
    """Signs with a key on a PKCS#11 token; the private key stays on the token."""

    uri: Pkcs11Uri

    def certificate(self) -> bytes:
        return self.certificate_bytes()

    def certificate_bytes(self) -> bytes:
        from pkcs11 import Attribute, ObjectClass

        label = (self.uri.object or "reposeal") + CERT_SUFFIX
        with _session(self.uri) as session:
            found = list(
                session.get_objects({Attribute.CLASS: ObjectClass.DATA, Attribute.LABEL: label})
            )
            if len(found) != 1:
                raise ToolMissingError(
                    f"no OpenPGP certificate {label!r} on token {self.uri.token!r}: "
                    "was the key made by `reposeal key generate`?"
                )
            return bytes(found[0][Attribute.VALUE])

    @property
    def fingerprint(self) -> str:
        return (
            packets.PublicKey.from_certificate(self.certificate_bytes()).fingerprint.hex().upper()
        )

    def sign_detached(self, stream: BinaryIO, options: SignOptions = NO_OPTIONS) -> bytes:
        from pkcs11 import ObjectClass

        key = packets.PublicKey.from_certificate(self.certificate_bytes())

        def feed(h: hashlib._Hash) -> None:
            while chunk := stream.read(1 << 20):
                h.update(chunk)

        import pkcs11.exceptions as px

        with _session(self.uri) as session:
            private = _find(session, self.uri, ObjectClass.PRIVATE_KEY)
            try:
                return packets.signature(
                    key,
                    packets.SIG_BINARY,
                    feed,
                    _raw_signer(private, key.algorithm),
                    created=int(time.time()),
                    extra_hashed=packets.document_subpackets(options.expires_in, options.notations),
                )
            except px.PKCS11Error as exc:
                raise SigningError(f"the token refused to sign: {type(exc).__name__}") from None
