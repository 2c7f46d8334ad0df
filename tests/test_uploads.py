"""A build upload's header: what the builder writes the repo machine reads back, and any other
bytes are an UploadFormatError that says which part is wrong (never a crash)."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reposeal.alpm.limits import MAX_HEADER
from reposeal.protocol.uploads import LENGTH_BYTES, UploadFormatError, UploadHeader


@given(st.binary(max_size=300), st.binary(max_size=300))
def test_a_header_reads_back_as_written(statement: bytes, signatures: bytes) -> None:
    body = UploadHeader(statement, signatures).to_bytes()
    n = UploadHeader.length(body[:LENGTH_BYTES])
    assert len(body) == LENGTH_BYTES + n
    assert UploadHeader.from_bytes(body[LENGTH_BYTES:]) == UploadHeader(statement, signatures)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"signatures": ""}', "lacks 'statement'"),
        (b'{"statement": "", "signatures": 5}', "lacks 'signatures'"),
        (b'{"statement": "a b", "signatures": ""}', "'statement' is not valid base64"),
        (b'{"statement": "", "signatures": "@@@@"}', "'signatures' is not valid base64"),
    ],
)
def test_a_malformed_header_says_what_is_wrong(header: bytes, message: str) -> None:
    with pytest.raises(UploadFormatError, match=message):
        UploadHeader.from_bytes(header)


def test_the_header_length_is_bounded_before_anything_is_read() -> None:
    assert UploadHeader.length(struct.pack(">I", MAX_HEADER)) == MAX_HEADER
    with pytest.raises(UploadFormatError, match="larger than"):
        UploadHeader.length(struct.pack(">I", MAX_HEADER + 1))
    with pytest.raises(UploadFormatError, match="ends before"):
        UploadHeader.length(b"\x00\x01")


@given(st.binary(max_size=200))
def test_any_bytes_are_a_header_or_a_typed_error(raw: bytes) -> None:
    with contextlib.suppress(UploadFormatError):
        UploadHeader.from_bytes(raw)
