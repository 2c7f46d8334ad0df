"""The repo machine's copy of the enclave's transparency log, and its export to the mirror.

The enclave opens no port: after answering jobs it pushes what its log gained since the
copy's size, with the checkpoint it signed for that size. Nothing is kept unless it holds:
the entries extend the copy (the copy appends them to its own tree, so the old tree stays
a prefix by construction), the checkpoint is signed by the log's note key, and it names
the copy's new size and root. The note key is pinned from the genesis entry the first push
carries (or given with ``--log-key``). Mirrors then get the C2SP tiles and the checkpoint,
written last, as static files (``reposeal.translog.tiles``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from reposeal.errors import InputError, ReposealError
from reposeal.fsio import atomic_write
from reposeal.translog.checkpoint import Checkpoint, NoteVerifier, open_note
from reposeal.translog.store import MAX_ENTRY_BYTES, TransparencyLog
from reposeal.translog.tiles import export as export_tiles

MAX_PUSH_BYTES = 512 << 10  # entries per push (the bridge's JSON limit is 1 MiB)


class LogPushError(InputError):
    """A push that does not extend the copy, or whose checkpoint does not hold."""


class LogCopy:
    """``FOLDER/log.sqlite`` (the entries and tree), ``FOLDER/pin.json`` (note key, origin),
    ``FOLDER/sigs/SHA256`` (the repository key's signature over a checkpoint note)."""

    def __init__(self, folder: Path, key: NoteVerifier | None = None) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.key = key

    def _open(self) -> TransparencyLog:
        return TransparencyLog(self.folder / "log.sqlite")

    @property
    def size(self) -> int:
        with self._open() as log:
            return log.size

    def _pin(self, entries: list[bytes]) -> tuple[NoteVerifier, str | None]:
        """The note key (and origin) checkpoints must carry: pinned, given, or the first
        push's genesis entry."""
        pin = self.folder / "pin.json"
        if pin.exists():
            doc = json.loads(pin.read_bytes())
            return NoteVerifier.decode(doc["key"]), doc["origin"]
        if self.key is not None:
            return self.key, None
        try:
            genesis = json.loads(entries[0])
            if genesis.get("type") != "genesis":
                raise ValueError
            return NoteVerifier.decode(str(genesis["note_verifier"])), None
        except (IndexError, ValueError, KeyError, TypeError):
            raise LogPushError("the first push must start with the log's genesis entry") from None

    def receive(
        self, start: int, entries: list[bytes], note: bytes, signature: bytes | None = None
    ) -> int:
        """Append ``entries`` at ``start`` if ``note`` is a checkpoint of the result; return
        the new size. Anything else changes nothing."""
        for e in entries:
            if len(e) > MAX_ENTRY_BYTES:
                raise LogPushError(f"a log entry of {len(e)} bytes is larger than allowed")
        with self._open() as log:
            if start != log.size:
                raise LogPushError(f"the copy holds {log.size} entries, not {start}")
            key, origin = self._pin(entries)
            seen: list[Checkpoint] = []

            def check(size: int, root: bytes) -> bytes:
                try:
                    cp = Checkpoint.parse(open_note(note, key))
                except ReposealError as exc:  # malformed, or not signed by the log's key
                    raise LogPushError(f"checkpoint: {exc.message}") from None
                if (cp.size, cp.root) != (size, root) or origin not in (None, cp.origin):
                    raise LogPushError(
                        f"the checkpoint ({cp.origin}, size {cp.size}) is not the tree these "
                        f"entries make (size {size}): a fork or a gap; nothing was kept"
                    )
                seen.append(cp)
                return note

            log.append(entries, checkpoint=check)
            if origin is None:  # the first push: pin what it proved
                doc = {"key": key.encode(), "origin": seen[0].origin}
                atomic_write(self.folder / "pin.json", json.dumps(doc).encode())
            if signature:
                self._keep_signature(note, signature)
            return log.size

    def _keep_signature(self, note: bytes, signature: bytes) -> None:
        sigs = self.folder / "sigs"
        sigs.mkdir(exist_ok=True)
        name = hashlib.sha256(note).hexdigest()
        atomic_write(sigs / name, signature, durable=False)
        for old in sigs.iterdir():
            if old.name != name and not old.name.startswith("."):
                old.unlink(missing_ok=True)

    def export(self, out: Path) -> int:
        """Tiles for the copy's latest checkpoint, then the checkpoint itself (and its
        OpenPGP signature, when the enclave sent one); return the files written."""
        with self._open() as log:
            latest = log.latest_checkpoint()
            if latest is None:
                return 0
            size, _, note = latest
            sig = self.folder / "sigs" / hashlib.sha256(note).hexdigest()
            return export_tiles(log, out, note, size, sig.read_bytes() if sig.exists() else None)
