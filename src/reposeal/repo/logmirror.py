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
import io
import json
from pathlib import Path

from reposeal.alpm.limits import (
    MAX_ENTRY_BYTES,
    MAX_FILES_BYTES,
    MAX_PKGBUILD_TEXT,
    MAX_SIG_FILE_BYTES,
)
from reposeal.errors import InputError, ReposealError
from reposeal.fsio import atomic_write
from reposeal.protocol.logfiles import FILE_PATH, named_digest
from reposeal.translog.checkpoint import Checkpoint, NoteVerifier, open_note
from reposeal.translog.store import TransparencyLog
from reposeal.translog.tiles import export as export_tiles


# what an entry names, by its path in an enclave home (and below MIRROR/log/)
class LogPushError(InputError):
    """A push that does not extend the copy, or whose checkpoint does not hold."""


class LogCopy:
    """``FOLDER/log.sqlite`` (the entries and tree), ``FOLDER/pin.json`` (note key, origin),
    ``FOLDER/sigs/SHA256`` (the repository key's signature over a checkpoint note),
    ``FOLDER/files/`` (records, statements, policies the entries name)."""

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

    def head(self) -> tuple[int, bytes | None]:
        """The copy's size and the checkpoint note it holds for that size (None: empty),
        with the witnesses' cosignatures gathered on it."""
        size, note = self.signed_head()
        return size, None if note is None else self.cosigned(note)

    def signed_head(self) -> tuple[int, bytes | None]:
        """The copy's size and the checkpoint note as the enclave signed it."""
        with self._open() as log:
            latest = log.latest_checkpoint()
            return log.size, latest[2] if latest is not None else None

    def tlog_proof(self, index: int) -> bytes | None:
        """A C2SP tlog-proof of entry ``index`` in the newest checkpoint (with the
        cosignatures kept for it), the entry as its extra data; None before that checkpoint."""
        from reposeal.translog.proof import make_proof

        with self._open() as log:
            latest = log.latest_checkpoint()
            if latest is None or latest[0] <= index:
                return None
            size, _, note = latest
            hashes = log.inclusion_proof(index, size)
            return make_proof(log.entry(index), index, hashes, self.cosigned(note))

    def consistency_proof(self, old: int, new: int) -> list[bytes]:
        with self._open() as log:
            return log.consistency_proof(old, new)

    def cosigned(self, note: bytes) -> bytes:
        """``note`` with the cosignatures kept for it (``note`` itself if none)."""
        path = self.folder / "cosigned" / hashlib.sha256(note).hexdigest()
        return path.read_bytes() if path.exists() else note

    def keep_cosigned(self, note: bytes, cosigned: bytes) -> None:
        """Keep ``cosigned`` (``note`` with witness lines) as what is shown for ``note``;
        cosignatures on older notes are dropped."""
        if self.cosigned(note) == cosigned:
            return  # the usual round: nothing new
        folder = self.folder / "cosigned"
        folder.mkdir(exist_ok=True)
        name = hashlib.sha256(note).hexdigest()
        atomic_write(folder / name, cosigned)
        for old in folder.iterdir():
            if old.name != name and not old.name.startswith("."):
                old.unlink(missing_ok=True)

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

            if signature:  # before the checkpoint is visible: an export never misses it
                self._write_signature(note, signature)
            log.append(entries, checkpoint=check)
            if origin is None:  # the first push: pin what it proved
                doc = {"key": key.encode(), "origin": seen[0].origin}
                atomic_write(self.folder / "pin.json", json.dumps(doc).encode())
            if signature:  # the copy's head is this note now: drop the others' signatures
                self._prune_signatures(note)
            return log.size

    def receive_files(self, tar: bytes) -> int:
        """Keep the files entries name (a tar of them, pushed before the entries): each path
        one an enclave home uses, each .json the sha256 its name says; return how many were
        new. A bad member refuses the whole push."""
        from reposeal.alpm.limits import DEFAULT_LIMITS
        from reposeal.alpm.tarformat import TarReader

        files: dict[str, bytes] = {}
        reader = TarReader(io.BytesIO(tar), DEFAULT_LIMITS, max_total=MAX_FILES_BYTES)
        try:
            for m in reader.members(lambda _: True, MAX_FILES_BYTES):
                if m.kind != "file" or not FILE_PATH.fullmatch(m.name):
                    raise LogPushError(f"not a file a log entry names: {m.name[:80]!r}")
                data = reader.last_data or b""
                digest = named_digest(m.name)
                if digest is not None and hashlib.sha256(data).hexdigest() != digest:
                    raise LogPushError(f"{m.name} does not match its hash")
                if m.name.startswith("pkgbuilds/") and len(data) > MAX_PKGBUILD_TEXT:
                    raise LogPushError(f"{m.name} is larger than a PKGBUILD text may be")
                if m.name.endswith(".sig") and len(data) > MAX_SIG_FILE_BYTES:
                    raise LogPushError(f"{m.name} is larger than a signature file")
                files[m.name] = data
        except ReposealError as exc:
            if isinstance(exc, LogPushError):
                raise
            raise LogPushError(f"the files of a log push do not read: {exc.message}") from None
        new = 0
        for name, data in files.items():
            target = self.folder / "files" / name
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(target, data, durable=False)
                new += 1
        return new

    def _write_signature(self, note: bytes, signature: bytes) -> str:
        """Keep the enclave's signature of ``note`` under the note's hash (others stay)."""
        sigs = self.folder / "sigs"
        sigs.mkdir(exist_ok=True)
        name = hashlib.sha256(note).hexdigest()
        atomic_write(sigs / name, signature, durable=False)
        return name

    def has_signature(self, note: bytes) -> bool:
        """Whether the enclave's signature of this checkpoint note is kept."""
        return (self.folder / "sigs" / hashlib.sha256(note).hexdigest()).exists()

    def _prune_signatures(self, note: bytes) -> None:
        """Drop every kept signature but this note's."""
        name = hashlib.sha256(note).hexdigest()
        for old in (self.folder / "sigs").iterdir():
            if old.name != name and not old.name.startswith("."):
                old.unlink(missing_ok=True)

    def export(self, out: Path) -> int:
        """Tiles for the copy's latest checkpoint, then the checkpoint itself with the
        cosignatures gathered on it (and the enclave's OpenPGP signature over the note as it
        signed it, when it sent one); return the files written."""
        with self._open() as log:
            latest = log.latest_checkpoint()
            if latest is None:
                return 0
            size, _, note = latest
            sig = self.folder / "sigs" / hashlib.sha256(note).hexdigest()
            written = self._export_files(out)
            return written + export_tiles(
                log, out, self.cosigned(note), size, sig.read_bytes() if sig.exists() else None
            )

    def _export_files(self, out: Path) -> int:
        """The files entries name, beside the tiles (before them: an entry on the mirror
        never names a file that is not there yet)."""
        written = 0
        src = self.folder / "files"
        for path in sorted(src.rglob("*")) if src.exists() else []:
            target = out / path.relative_to(src)
            if path.is_file() and not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(target, path.read_bytes(), durable=False)
                written += 1
        return written
