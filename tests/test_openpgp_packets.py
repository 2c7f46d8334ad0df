"""The OpenPGP packet reader every signature file from outside goes through: real keys and
signatures read as pysequoia makes them, and hostile bytes refused with ValueError (what its
callers turn into a typed "not a file of signature packets"), never another exception."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pysequoia
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reposeal.errors import InvalidSignatureFileError
from reposeal.evidence.quorum import one_per_signer
from reposeal.openpgp.packets import iter_packets, key_fingerprints, split_signatures
from reposeal.openpgp.soft import SoftSigner
from reposeal.openpgp.verify import Keyring


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> SoftSigner:
    path = Path(tmp_path_factory.mktemp("k")) / "k.key"
    path.write_text(str(pysequoia.Tsk.generate("K <k@x>", profile=pysequoia.Profile.RFC4880)))
    return SoftSigner(path)


def test_real_certificates_and_signatures_read(signer: SoftSigner) -> None:
    cert = signer.certificate()
    assert signer.fingerprint.upper() in key_fingerprints(cert)
    a = signer.sign_detached(io.BytesIO(b"data"))
    b = signer.sign_detached(io.BytesIO(b"data"))
    both = split_signatures(a + b)
    assert len(both) == 2 and all(tag == 2 for tag, _ in iter_packets(b"".join(both)))
    kept = one_per_signer(b"data", a + b, Keyring.from_bytes(cert))
    assert len(split_signatures(kept)) == 1, "one signature per signer is kept"


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=64))
def test_hostile_bytes_are_a_value_error_and_nothing_else(data: bytes) -> None:
    with contextlib.suppress(ValueError):
        list(iter_packets(data))


@pytest.mark.parametrize("data", [b"\xc2", b"\xc2\xff\x00", b"\xc2\xc0", b"\x88", b"\x89\x00"])
def test_truncated_headers_are_refused(data: bytes) -> None:
    with pytest.raises(ValueError):
        list(iter_packets(data))
    with pytest.raises(InvalidSignatureFileError):
        one_per_signer(b"x", data, Keyring(()))
