"""The name index must give exactly what restricting the whole signing state gives."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from reposeal.enclave.records import NameIndex, restrict_state
from reposeal.policy.decide import (
    Decision,
    PackageRecord,
    Request,
    SigningState,
    apply,
    apply_packages,
)

names = st.sampled_from(["a", "b", "c", "d"])
record = st.builds(
    lambda n, v, arch, sha: PackageRecord(n, v, arch, sha * 64, f"{n}-{v}-{arch}.pkg.tar.zst", n),
    names,
    st.sampled_from(["1-1", "2-1", "1:1-1"]),
    st.sampled_from(["x86_64", "any"]),
    st.sampled_from(["a", "b"]),
)
step = st.tuples(st.sampled_from(["core", "extra"]), st.booleans(), st.lists(record, max_size=4))


@settings(max_examples=200, deadline=None)
@given(st.lists(step, max_size=6), st.lists(names, max_size=3))
def test_index_restrict_equals_restrict_state(
    steps: list[tuple[str, bool, list[PackageRecord]]], wanted: list[str]
) -> None:
    state, index = SigningState(), NameIndex()
    for repo, as_db, records in steps:
        by_name = {r.name: r for r in records}
        index.add(repo, by_name.values())
        if as_db:
            state = apply(state, Request(repo, "x86_64", None, "0" * 64, {}, by_name), Decision())
        else:
            state = apply_packages(state, repo, by_name)
    assert index.restrict(state, wanted) == restrict_state(state, wanted)
