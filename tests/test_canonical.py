"""The fast canonical JSON path equals RFC 8785 (rfc8785) on every value it takes."""

from __future__ import annotations

import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from reposeal import canonical

_keys = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=8)
_leaves = st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=12)
_values = st.recursive(
    _leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=1000)
@given(_values)
def test_fast_path_matches_rfc8785(value: object) -> None:
    assert canonical.dumps(value) == rfc8785.dumps(value)


def test_integers_past_2_53_get_a_typed_error() -> None:
    import pytest

    from reposeal.canonical import CanonicalError, dumps

    for big in (2**53, -(2**53), 2**64):
        with pytest.raises(CanonicalError, match="2\\^53"):
            dumps({"n": big})
