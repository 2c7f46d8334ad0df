"""tlog-tiles export, read back by an independent client-side recomputation."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pysequoia

from reposeal.openpgp.soft import SoftSigner
from reposeal.openpgp.verify import Keyring, verify_detached
from reposeal.translog import merkle
from reposeal.translog.checkpoint import Checkpoint, NoteSigner, verify_checkpoint
from reposeal.translog.store import TransparencyLog
from reposeal.translog.tiles import encode_index, export, tile_path


def test_index_encoding() -> None:
    assert encode_index(5) == "005"
    assert encode_index(1000) == "x001/000"
    assert encode_index(1234067) == "x001/x234/067"
    assert tile_path(0, 1234067, 256) == "tile/0/x001/x234/067"
    assert tile_path("entries", 2, 7) == "tile/entries/002.p/7"


def read_bundle(data: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos < len(data):
        (n,) = struct.unpack(">H", data[pos : pos + 2])
        out.append(data[pos + 2 : pos + 2 + n])
        pos += 2 + n
    return out


def test_export_matches_the_checkpoint(tmp_path: Path) -> None:
    signer = NoteSigner.generate("example.org/log")
    tsk = pysequoia.Tsk.generate("Enclave <e@x>", profile=pysequoia.Profile.RFC4880)
    (tmp_path / "enclave.key").write_text(str(tsk))
    enclave = SoftSigner(tmp_path / "enclave.key")
    out = tmp_path / "public"
    with TransparencyLog(tmp_path / "log.sqlite") as log:
        for size in (3, 256, 700):
            log.append([f"e{i}".encode() for i in range(log.size, size)])
            note = signer.sign(Checkpoint("example.org/log", size, log.root()).text()).encode()
            export(log, out, note, size, enclave.sign_detached(io.BytesIO(note)))
    pgp = Keyring((tsk.extract_certificate(),))
    assert verify_detached(out / "checkpoint", (out / "checkpoint.sig").read_bytes(), pgp)
    cp = verify_checkpoint((out / "checkpoint").read_bytes(), signer.verifier, "example.org/log")
    assert cp.size == 700
    # a client rebuilds the tree from tiles alone
    leaves = b"".join(
        (out / tile_path(0, n, w)).read_bytes() for n, w in ((0, 256), (1, 256), (2, 188))
    )
    hashes = [leaves[i : i + 32] for i in range(0, len(leaves), 32)]
    assert merkle.root_of_leaves(hashes) == cp.root
    level1 = (out / tile_path(1, 0, 2)).read_bytes()
    assert level1[:32] == merkle.root_of_leaves(hashes[:256])
    entries = read_bundle((out / tile_path("entries", 2, 188)).read_bytes())
    assert entries[0] == b"e512" and len(entries) == 188
    assert (out / tile_path(0, 0, 3)).exists()  # the older partial tile stays for old readers


def test_each_checkpoint_keeps_its_own_signature(tmp_path: Path) -> None:
    """A reader fetching the checkpoint while it is replaced finds the signature of that
    very checkpoint; a checkpoint that came without one is not shown beside another's."""
    from reposeal.translog.tiles import sig_path

    signer = NoteSigner.generate("example.org/log")
    tsk = pysequoia.Tsk.generate("Enclave <e@x>", profile=pysequoia.Profile.RFC4880)
    (tmp_path / "enclave.key").write_text(str(tsk))
    enclave = SoftSigner(tmp_path / "enclave.key")
    pgp = Keyring((tsk.extract_certificate(),))
    out = tmp_path / "public"
    notes = []
    with TransparencyLog(tmp_path / "log.sqlite") as log:
        for size in (2, 5):
            log.append([f"e{i}".encode() for i in range(log.size, size)])
            note = signer.sign(Checkpoint("example.org/log", size, log.root()).text()).encode()
            export(log, out, note, size, enclave.sign_detached(io.BytesIO(note)))
            notes.append(note)
        for note in notes:  # both signatures stay, each under its checkpoint
            assert verify_detached(note, (out / sig_path(note)).read_bytes(), pgp)
        log.append([b"e5"])
        bare = signer.sign(Checkpoint("example.org/log", 6, log.root()).text()).encode()
        export(log, out, bare, 6, None)
    assert (out / "checkpoint").read_bytes() == bare
    assert not (out / "checkpoint.sig").exists(), "not the previous checkpoint's signature"
