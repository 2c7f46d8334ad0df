"""Signed notes and checkpoints, checked against the Go reference implementation's example."""

from __future__ import annotations

import pytest

from reposeal.errors import VerificationError
from reposeal.translog.checkpoint import (
    Checkpoint,
    CheckpointError,
    NoteSigner,
    NoteVerifier,
    open_note,
    verify_checkpoint,
)

# golang.org/x/mod/sumdb/note's documented example (key, text and signature).
VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
SIG = (
    "\u2014 PeterNeumann "
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)


def test_reference_note_byte_for_byte() -> None:
    signer = NoteSigner.decode(SKEY)
    assert signer.verifier.encode() == VKEY
    assert signer.encode() == SKEY
    note = signer.sign(TEXT)
    assert note == TEXT + "\n" + SIG
    assert open_note(note.encode(), NoteVerifier.decode(VKEY)) == TEXT


def test_tampered_or_foreign_notes_are_refused() -> None:
    verifier = NoteVerifier.decode(VKEY)
    note = (TEXT + "\n" + SIG).encode()
    with pytest.raises(VerificationError, match="invalid"):
        open_note(note.replace(b"problem,", b"problem!"), verifier)
    other = NoteSigner.generate("other.example/log")
    with pytest.raises(VerificationError, match="not signed by"):
        open_note(other.sign(TEXT).encode(), verifier)
    for bad in (b"no signature\n", TEXT.encode() + b"\n- x y\n", b"\xff\xfe\n\n"):
        with pytest.raises((CheckpointError, VerificationError)):
            open_note(bad, verifier)
    with pytest.raises(CheckpointError):
        NoteVerifier.decode(VKEY.replace("c74f20a3", "c74f20a4"))


def test_checkpoint_round_trip() -> None:
    signer = NoteSigner.generate("repo.example.org/log")
    cp = Checkpoint("repo.example.org/log", 42, bytes(range(32)))
    note = signer.sign(cp.text()).encode()
    assert verify_checkpoint(note, signer.verifier, "repo.example.org/log") == cp
    with pytest.raises(VerificationError, match="not 'other'"):
        verify_checkpoint(note, signer.verifier, "other")
    for text in ("o\n01\nAAAA\n", "o\nx\n" + "A" * 44 + "\n", "o\n1\n"):
        with pytest.raises(CheckpointError):
            Checkpoint.parse(text)


def test_every_line_after_the_text_is_a_signature() -> None:
    """Go: "malformed note" for a line in the signature block that is not a signature, even
    after a valid one."""
    verifier = NoteVerifier.decode(VKEY)
    for tail in ("not a signature\n", "\u2014 \n", "\u2014 Peter x\n", "\u2014 a b+c !!\n"):
        with pytest.raises(CheckpointError, match="malformed note"):
            open_note((TEXT + "\n" + SIG + tail).encode(), verifier)


def test_blank_lines_inside_the_text_are_allowed_when_opening() -> None:
    """C2SP signed-note splits at the last blank line: the text may hold blank lines."""
    import base64

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    signer = NoteSigner.decode(SKEY)
    with pytest.raises(CheckpointError):  # what we sign has none...
        signer.sign("one\n\ntwo\n")
    # ...but a note made elsewhere with one opens (signed by hand, as Go's Sign would)
    text = "first paragraph\n\nsecond paragraph\n"
    key = Ed25519PrivateKey.from_private_bytes(signer.seed)
    raw = signer.verifier.key_hash + key.sign(text.encode())
    note = f"{text}\n\u2014 PeterNeumann {base64.b64encode(raw).decode()}\n"
    assert open_note(note.encode(), NoteVerifier.decode(VKEY)) == text
