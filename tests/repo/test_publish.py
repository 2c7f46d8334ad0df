"""Publishing generations: every state a reader can see is a complete database."""

from __future__ import annotations

from pathlib import Path

from reposeal.repo.paths import RepoPaths
from reposeal.repo.publish import publish


def test_a_plain_signature_beside_linked_archives_is_adopted_whole(tmp_path: Path) -> None:
    paths = RepoPaths.from_db_path(tmp_path / "core.db.tar.gz")
    publish(paths, {"core.db.tar.gz": b"db v1", "core.files.tar.gz": b"files v1"})
    (tmp_path / "core.db.tar.gz.sig").write_bytes(b"sig v1")  # someone put a plain file
    publish(paths, {"core.db.tar.gz": b"db v2", "core.files.tar.gz": b"files v2"})
    assert (tmp_path / "core.db").read_bytes() == b"db v2"
    # the adopted generation held the linked database too (no broken link in between)
    generations = sorted((tmp_path / "core.generations").iterdir())
    adopted = generations[-2]
    assert not (adopted / "core.db.tar.gz").is_symlink()
    assert (adopted / "core.db.tar.gz").read_bytes() == b"db v1"
    assert (adopted / "core.db.tar.gz.sig").read_bytes() == b"sig v1"
