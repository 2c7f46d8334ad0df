"""Hypothesis strategies shared by the fuzz tests of the typed records."""

from __future__ import annotations

from hypothesis import strategies as st

# any JSON value, small: what a hostile peer could send in place of a record
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
