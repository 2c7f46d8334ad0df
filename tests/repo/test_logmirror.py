"""The repo machine's log copy keeps only pushes that extend it under a checkpoint signed by
the log's key for exactly the tree they make; anything else changes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reposeal.repo.logmirror import LogCopy, LogPushError
from reposeal.translog.checkpoint import Checkpoint, NoteSigner
from reposeal.translog.merkle import leaf_hash, root_of_leaves
from reposeal.translog.tiles import tile_path

ORIGIN = "test.example/log"
KEY = NoteSigner.generate(ORIGIN)


def genesis(key: NoteSigner = KEY) -> bytes:
    doc = {"type": "genesis", "note_verifier": key.verifier.encode()}
    return json.dumps(doc).encode()


def note(entries: list[bytes], key: NoteSigner = KEY, origin: str = ORIGIN) -> bytes:
    root = root_of_leaves([leaf_hash(e) for e in entries])
    return key.sign(Checkpoint(origin, len(entries), root).text()).encode()


LOG = [genesis(), b'{"type":"db","n":1}', b'{"type":"db","n":2}']


def test_pushes_that_extend_the_log_are_kept_and_exported(tmp_path: Path) -> None:
    copy = LogCopy(tmp_path / "copy")
    assert copy.receive(0, LOG[:2], note(LOG[:2])) == 2
    assert copy.receive(2, LOG[2:], note(LOG), b"sig") == 3
    out = tmp_path / "mirror"
    assert copy.export(out) > 0
    assert (out / "checkpoint").read_bytes() == note(LOG)
    assert (out / "checkpoint.sig").read_bytes() == b"sig"
    assert (out / tile_path(0, 0, 3)).read_bytes() == b"".join(leaf_hash(e) for e in LOG)


@pytest.mark.parametrize(
    "case",
    ["gap", "fork", "other key", "other origin", "no genesis", "garbage note", "huge entry"],
)
def test_hostile_pushes_change_nothing(tmp_path: Path, case: str) -> None:
    copy = LogCopy(tmp_path / "copy")
    copy.receive(0, LOG[:2], note(LOG[:2]))
    forked = [*LOG[:2], b'{"type":"db","n":"forged"}']
    start, entries, cp = {
        "gap": (3, [b"x"], note([*LOG, b"x"])),
        "fork": (2, LOG[2:], note(forked)),
        "other key": (2, LOG[2:], note(LOG, NoteSigner.generate(ORIGIN))),
        "other origin": (2, LOG[2:], note(LOG, NoteSigner.generate("evil"), "evil")),
        "no genesis": (2, LOG[2:], note(LOG)),  # (a fresh copy below)
        "garbage note": (2, LOG[2:], b"\xff\x00not a note"),
        "huge entry": (2, [b"x" * 70000], note([*LOG[:2], b"x" * 70000])),
    }[case]
    if case == "no genesis":
        copy = LogCopy(tmp_path / "fresh")
        start, entries, cp = 0, LOG[1:], note(LOG[1:])
    before = copy.size
    with pytest.raises(LogPushError):
        copy.receive(start, entries, cp)
    assert copy.size == before
    out = tmp_path / "mirror"
    copy.export(out)
    if before:
        assert (out / "checkpoint").read_bytes() == note(LOG[:2])


def tar(files: dict[str, bytes]) -> bytes:
    from reposeal.alpm.tarformat import END_OF_ARCHIVE, tar_member

    return b"".join(tar_member(n, d, 0) for n, d in files.items()) + END_OF_ARCHIVE


def test_files_an_entry_names_are_kept_only_as_named(tmp_path: Path) -> None:
    import hashlib

    copy = LogCopy(tmp_path / "copy")
    records = b'[{"name":"a"}]'
    name = f"records/{hashlib.sha256(records).hexdigest()}.json"
    sig = f"evidence/{'a' * 64}.json.sig"
    signatures = f"evidence/{hashlib.sha256(b'sigs').hexdigest()}.sig"
    assert copy.receive_files(tar({signatures: b"sigs"})) == 1
    text = b"pkgname=a\n"
    pkgbuild = f"pkgbuilds/{hashlib.sha256(text).hexdigest()}"
    assert copy.receive_files(tar({name: records, sig: b"sigs", pkgbuild: text})) == 3
    assert copy.receive_files(tar({name: records})) == 0, "kept once"
    big = b"#" * (600 << 10)
    for bad in (
        {f"records/{'b' * 64}.json": records},  # not its hash
        {f"pkgbuilds/{'b' * 64}": text},  # an approved PKGBUILD's text is named by its hash
        {f"pkgbuilds/{hashlib.sha256(big).hexdigest()}": big},
        {f"pkgbuilds/{hashlib.sha256(text).hexdigest()}.sh": text},
        {"../escape.json": records},
        {"records/x.json": records},
        {"notes/" + "c" * 64 + ".json": records},
        {f"evidence/{'d' * 64}.json.sig": b"x" * ((1 << 20) + 1)},
        {f"evidence/{'d' * 64}.sig": b"sigs"},  # a signature file is named by its hash
    ):
        with pytest.raises(LogPushError):
            copy.receive_files(tar(bad))
    with pytest.raises(LogPushError):
        copy.receive_files(b"\x00garbage" * 100)
    out = tmp_path / "mirror"
    copy.receive(0, LOG[:1], note(LOG[:1]))
    copy.export(out)
    assert (out / name).read_bytes() == records and (out / sig).read_bytes() == b"sigs"
    assert (out / pkgbuild).read_bytes() == text
    assert not list(out.rglob("escape*"))


def test_a_checkpoints_signature_is_kept_before_the_checkpoint_shows(tmp_path: Path) -> None:
    """The copy's head and its signature: the signature is written before the pushed
    checkpoint becomes the head (an export between the two would publish it unsigned, and
    the cycle, having exported that head, would not export it again), and a refused push
    leaves the head's signature in place."""
    copy = LogCopy(tmp_path / "copy")
    copy.receive(0, LOG[:2], note(LOG[:2]))
    assert not copy.has_signature(note(LOG[:2]))
    seen: list[bool] = []
    original = copy._open

    def spying():  # type: ignore[no-untyped-def]
        log = original()
        append = log.append

        def checked(entries, checkpoint=None):  # type: ignore[no-untyped-def]
            seen.append(copy.has_signature(note(LOG)))
            return append(entries, checkpoint=checkpoint)

        log.append = checked  # type: ignore[method-assign]
        return log

    copy._open = spying  # type: ignore[method-assign]
    copy.receive(2, LOG[2:], note(LOG), b"sig")
    assert seen == [True], "kept before the append commits"
    with pytest.raises(LogPushError):
        copy.receive(2, LOG[2:], note(LOG), b"other")  # a gap: nothing changes
    assert copy.has_signature(note(LOG))
