"""A build upload's body, as the builder writes it and the repo machine reads it: a 4-byte
big-endian length, a JSON header with the base64 build statement and its signatures, then
the package itself (streamed; not part of this record)."""

from __future__ import annotations

import base64
import binascii
import json
import struct
from dataclasses import dataclass

from reposeal.alpm.limits import MAX_HEADER
from reposeal.errors import InputError
from reposeal.protocol.wire import WireFormatError, json_object

LENGTH_BYTES = 4


class UploadFormatError(InputError):
    """A build upload's header that does not hold up; the message says which part."""


@dataclass(frozen=True, slots=True)
class UploadHeader:
    statement: bytes
    signatures: bytes

    def to_bytes(self) -> bytes:
        """The length and header that go before the package."""
        header = json.dumps(
            {
                "statement": base64.b64encode(self.statement).decode(),
                "signatures": base64.b64encode(self.signatures).decode(),
            }
        ).encode()
        return struct.pack(">I", len(header)) + header

    @staticmethod
    def length(prefix: bytes) -> int:
        """The header's length from the first LENGTH_BYTES bytes, within MAX_HEADER."""
        if len(prefix) != LENGTH_BYTES:
            raise UploadFormatError("the upload ends before its header's length")
        (n,) = struct.unpack(">I", prefix)
        if n > MAX_HEADER:
            raise UploadFormatError(f"the upload's header is larger than {MAX_HEADER} bytes")
        return int(n)

    @classmethod
    def from_bytes(cls, raw: bytes) -> UploadHeader:
        try:
            doc = json_object(raw, "the upload's header")
        except WireFormatError as exc:
            raise UploadFormatError(exc.message) from None
        return cls(base64_field(doc, "statement"), base64_field(doc, "signatures"))


def base64_field(doc: dict[str, object], key: str) -> bytes:
    """A field of a JSON request that carries bytes as base64 (strict alphabet)."""
    value = doc.get(key)
    if not isinstance(value, str):
        raise UploadFormatError(f"the upload lacks {key!r} (base64)")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise UploadFormatError(f"{key!r} is not valid base64") from None
