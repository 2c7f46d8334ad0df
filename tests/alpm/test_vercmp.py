"""vercmp must agree with libalpm's own `vercmp` binary, corner cases included."""

from __future__ import annotations

import ctypes
import ctypes.util
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reposeal.alpm.vercmp import vercmp, version_key


def real_vercmp(a: str, b: str) -> int:
    """pacman's own `vercmp` tool."""
    out = subprocess.run(["vercmp", a, b], capture_output=True, text=True, check=True).stdout
    return int(out)


_libalpm = ctypes.CDLL(ctypes.util.find_library("alpm") or "libalpm.so.13")
_libalpm.alpm_pkg_vercmp.argtypes = (ctypes.c_char_p, ctypes.c_char_p)
_libalpm.alpm_pkg_vercmp.restype = ctypes.c_int


def libalpm_vercmp(a: str, b: str) -> int:
    """The function the `vercmp` tool calls, called in-process (thousands of pairs in a
    second, where a process a pair takes half a minute)."""
    return max(-1, min(1, int(_libalpm.alpm_pkg_vercmp(a.encode(), b.encode()))))


KNOWN = [
    ("1.0", "1.0", 0),
    ("1.0", "1.0a", 1),
    ("1.0a", "1.0b", -1),
    ("1.0alpha", "1.0", -1),
    ("1.0", "1.0.1", -1),
    ("1.0.a", "1.0a", 1),
    ("1:1.0", "2.0", 1),
    ("0:1.0", "1.0", 0),
    (":1.0", "1.0", 0),
    ("1.0-1", "1.0-2", -1),
    ("1.0-1", "1.0", 0),
    ("1.0-1.1", "1.0-1", 1),
    ("001", "1", 0),
    ("1..0", "1.0", 1),
    ("1.0_1", "1.0.1", 0),
    ("1.0~rc1", "1.0", 1),
    ("a", "b", -1),
    ("1", "a", 1),
    ("2.6.28.1", "2.6.28", 1),
    ("1.5.0", "1.5", 1),
    ("1.5.b", "1.5", 1),
    ("1.5.1", "1.5b", 1),
    ("1:0.1", "0:10", 1),
    ("1.0-1", "1.0-1-1", -1),
]


@pytest.mark.parametrize(("a", "b", "expected"), KNOWN)
def test_known_cases(a: str, b: str, expected: int) -> None:
    assert vercmp(a, b) == expected
    assert vercmp(b, a) == -expected
    assert real_vercmp(a, b) == expected


_segment = st.one_of(
    st.integers(0, 2000).map(str),
    st.sampled_from(["0", "00", "01", "a", "b", "alpha", "beta", "rc", "pre", "Z", "git", "r"]),
    st.text("0123456789abcXYZ", min_size=1, max_size=4),
)
_sep = st.sampled_from([".", ".", ".", "_", "+", "~", "..", "-", ":", ""])


@st.composite
def versions(draw: st.DrawFn) -> str:
    if draw(st.integers(0, 9)) == 0:  # free-form noise, including odd separators
        return draw(st.text("0123456789ab.:-_+~", min_size=1, max_size=10))
    parts = [draw(_segment)]
    for _ in range(draw(st.integers(0, 4))):
        parts += [draw(_sep), draw(_segment)]
    v = "".join(parts)
    if draw(st.booleans()):
        v = f"{draw(st.integers(0, 3))}:{v}"
    if draw(st.booleans()):
        v = f"{v}-{draw(st.integers(0, 12))}"
        if draw(st.booleans()):
            v += f".{draw(st.integers(0, 3))}"
    return v


@settings(max_examples=5000, deadline=None, suppress_health_check=list(HealthCheck))
@given(versions(), versions())
def test_agrees_with_libalpm_on_generated_pairs(a: str, b: str) -> None:
    assert vercmp(a, b) == libalpm_vercmp(a, b), (a, b)


def test_the_library_call_is_the_tool() -> None:
    for a, b, _ in KNOWN:
        assert libalpm_vercmp(a, b) == real_vercmp(a, b), (a, b)


@settings(max_examples=500, deadline=None)
@given(versions(), versions(), versions())
def test_is_antisymmetric_and_sort_key_is_consistent(a: str, b: str, c: str) -> None:
    assert vercmp(a, b) == -vercmp(b, a)
    assert vercmp(a, a) == 0
    ordered = sorted([a, b, c], key=version_key)
    assert vercmp(ordered[0], ordered[1]) <= 0
