"""The fast path for plain tars must agree with the strict reader: it either yields exactly
what the strict reader yields, or steps aside (None) and lets the strict reader decide."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reposeal.alpm.limits import DEFAULT_LIMITS
from reposeal.alpm.syncdb import render_archive
from reposeal.alpm.tarformat import Member, TarReader, _header_sum, plain_members
from reposeal.errors import InputError
from tests.alpm.test_syncdb import entries_for

LIMITS = DEFAULT_LIMITS
MAX_TOTAL = 1 << 24


def strict(data: bytes, end_optional: bool) -> list[tuple[Member, bytes | None]] | InputError:
    reader = TarReader(io.BytesIO(data), LIMITS, max_total=MAX_TOTAL, end_optional=end_optional)
    try:
        return [(m, reader.last_data) for m in reader.members(lambda _: True, 4096)]
    except InputError as exc:
        return exc


def agree(data: bytes, end_optional: bool = False) -> bool:
    """Check agreement; True if the fast path took the archive."""
    fast = plain_members(
        data, LIMITS, max_total=MAX_TOTAL, max_data=4096, end_optional=end_optional
    )
    if fast is None:
        return False
    assert strict(data, end_optional) == fast
    return True


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return render_archive(entries_for(tmp_path_factory.mktemp("plain"), 4), True, "tar")


def test_the_fast_path_takes_a_database_and_agrees(plain: bytes) -> None:
    assert agree(plain)
    assert agree(plain[: len(plain) - 1024], end_optional=True)  # a chunk: no end blocks


def test_the_fast_path_steps_aside_for_anything_else(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("a/" + "n" * 120)  # needs a pax header
        tar.addfile(info, io.BytesIO(b""))
        link = tarfile.TarInfo("l")
        link.type = tarfile.SYMTYPE
        link.linkname = "a"
        tar.addfile(link)
    assert not agree(buf.getvalue())


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_fuzzed_tars_agree_with_the_strict_reader(plain: bytes, data: st.DataObject) -> None:
    raw = bytearray(plain)
    for _ in range(data.draw(st.integers(0, 6))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    agree(bytes(raw[:cut] if cut else raw), end_optional=data.draw(st.booleans()))


@given(st.binary(min_size=512, max_size=512))
def test_header_sum_is_the_byte_sum(header: bytes) -> None:
    assert _header_sum(header) == sum(header)
    assert _header_sum(b"\xff" * 512) == 255 * 512
