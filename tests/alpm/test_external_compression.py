"""The database compressions done by external programs (lrzip, lzop, compress, lzip):
round trips, and hostile or damaged input refused with typed errors."""

from __future__ import annotations

import pytest

from reposeal.alpm import compression
from reposeal.errors import CorruptArchiveError, LimitExceededError, ToolMissingError

KINDS = sorted(compression.EXTERNAL)
DATA = b"".join(b"entry %06d\n" % i for i in range(20000))


@pytest.mark.parametrize("kind", KINDS)
def test_round_trip_and_detection(kind: str) -> None:
    packed = compression.compress([DATA[:1000], DATA[1000:]], kind)
    assert compression.detect(packed[:263]) == kind
    assert compression.decompress(packed, kind, len(DATA)) == DATA


@pytest.mark.parametrize("kind", KINDS)
def test_a_bomb_is_stopped_at_the_limit(kind: str) -> None:
    packed = compression.compress([b"\0" * (8 << 20)], kind)
    with pytest.raises(LimitExceededError):
        compression.decompress(packed, kind, 1 << 20)


@pytest.mark.parametrize("kind", [k for k in KINDS if k != compression.LZW])
def test_truncated_or_damaged_data_is_refused(kind: str) -> None:
    """(compress's format has no check: a database in it is checked by the tar reader,
    tests/alpm/test_syncdb.py.)"""
    packed = compression.compress([DATA], kind)
    with pytest.raises(CorruptArchiveError):
        compression.decompress(packed[: len(packed) // 2], kind, 1 << 30)
    damaged = packed[:16] + bytes(b ^ 0x55 for b in packed[16:])
    with pytest.raises(CorruptArchiveError):
        compression.decompress(damaged, kind, 1 << 30)


def test_packages_in_these_formats_are_refused_with_a_way_out() -> None:
    import io

    with pytest.raises(Exception, match="PKGEXT"):
        compression.open_stream(io.BytesIO(b""), compression.LZIP)


def test_a_missing_program_names_the_debian_package(monkeypatch: pytest.MonkeyPatch) -> None:
    """(A tool this machine has cannot be made absent: its name is changed instead.)"""
    tool = compression._Tool("lzip", ("no-such-lzip",), ("no-such-lzip", "-d"))
    monkeypatch.setitem(compression.EXTERNAL, compression.LZIP, tool)
    with pytest.raises(ToolMissingError, match="install Debian's lzip"):
        compression.compress([DATA], compression.LZIP)
