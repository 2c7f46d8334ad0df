"""Static export of the log as C2SP tlog-tiles, so mirrors serve it with rsync and HTTP.

    tile/<L>/<N>[.p/<W>]        hashes of tree level 8*L, 256 per full tile
    tile/entries/<N>[.p/<W>]    the entries, each as a 16-bit big-endian length + bytes
    checkpoint                  the signed checkpoint, written last

Full tiles never change and are written once; partial tiles are written for the current
size. Every file is written to a temporary name and renamed into place.
"""

from __future__ import annotations

import struct
from pathlib import Path

from reposeal.fsio import atomic_write
from reposeal.translog.store import TransparencyLog

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT


def encode_index(n: int) -> str:
    """``1234067`` -> ``x001/x234/067`` (groups of three digits, all but the last with x)."""
    digits = str(n)
    digits = "0" * (-len(digits) % 3) + digits
    groups = [digits[i : i + 3] for i in range(0, len(digits), 3)]
    return "/".join([*("x" + g for g in groups[:-1]), groups[-1]])


def tile_path(level: int | str, index: int, width: int) -> str:
    base = f"tile/{level}/{encode_index(index)}"
    return base if width == TILE_WIDTH else f"{base}.p/{width}"


def export(
    log: TransparencyLog,
    out: Path,
    checkpoint_note: bytes,
    size: int,
    openpgp_signature: bytes | None = None,
) -> int:
    """Write every tile the tree of ``size`` needs that is not there yet, then the
    checkpoint (and ``checkpoint.sig``, the enclave key's OpenPGP signature over it, which
    pacman users can check with the repository key they already trust); return the count."""
    written = 0
    level = 0
    while True:
        count = size >> (TILE_HEIGHT * level)  # hashes stored at tree level 8*level
        if count == 0:
            break
        for n in range((count + TILE_WIDTH - 1) // TILE_WIDTH):
            width = min(TILE_WIDTH, count - n * TILE_WIDTH)
            path = out / tile_path(level, n, width)
            if path.exists():
                continue
            hashes = log.leaf_hashes(TILE_HEIGHT * level, n * TILE_WIDTH, n * TILE_WIDTH + width)
            atomic_write(path, b"".join(hashes))
            written += 1
        level += 1
    for n in range((size + TILE_WIDTH - 1) // TILE_WIDTH):
        width = min(TILE_WIDTH, size - n * TILE_WIDTH)
        path = out / tile_path("entries", n, width)
        if path.exists():
            continue
        bundle = b"".join(
            struct.pack(">H", len(e)) + e
            for e in log.entries(n * TILE_WIDTH, n * TILE_WIDTH + width)
        )
        atomic_write(path, bundle)
        written += 1
    if openpgp_signature is not None:
        # also named by the checkpoint it signs: a reader that fetches the checkpoint while
        # it is being replaced still finds the signature that goes with it
        named = out / sig_path(checkpoint_note)
        named.parent.mkdir(parents=True, exist_ok=True)
        if not named.exists():
            atomic_write(named, openpgp_signature)
        atomic_write(out / "checkpoint.sig", openpgp_signature)
    else:  # another checkpoint's signature beside this one would only mislead
        (out / "checkpoint.sig").unlink(missing_ok=True)
    atomic_write(out / "checkpoint", checkpoint_note)
    return written


def sig_path(note: bytes) -> str:
    """Where the repository key's signature of a checkpoint is kept, by the checkpoint's
    body (origin, size, root: the log's own signature over it is deterministic)."""
    import hashlib

    body = note.split(b"\n\n", 1)[0]
    return f"checkpoint-sigs/{hashlib.sha256(body).hexdigest()}.sig"
