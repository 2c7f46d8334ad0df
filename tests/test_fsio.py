"""Writing files atomically, several at once with a single sync."""

from __future__ import annotations

from pathlib import Path

import pytest

from reposeal.fsio import atomic_write, write_all


def test_write_all_writes_every_file_and_leaves_no_temporaries(tmp_path: Path) -> None:
    files = {tmp_path / "a" / "one": b"1", tmp_path / "b" / "two": b"2" * 100_000}
    write_all(files)
    for path, data in files.items():
        assert path.read_bytes() == data
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["one", "two"]
    write_all({})


def test_a_failed_write_keeps_the_old_bytes(tmp_path: Path) -> None:
    target = tmp_path / "f"
    atomic_write(target, b"old")
    with pytest.raises(TypeError):
        atomic_write(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]
