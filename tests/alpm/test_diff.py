"""The pure database diff."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from reposeal.alpm.diff import PackageState, diff


def s(version: str, sha: str = "a") -> PackageState:
    return PackageState(version, sha)


def test_every_category() -> None:
    old = {"same": s("1-1"), "up": s("1-1"), "down": s("2-1"), "gone": s("1-1"), "evil": s("1-1")}
    new = {
        "same": s("1-1"),
        "up": s("1:0.5-1"),
        "down": s("1.9-1"),
        "new": s("1-1"),
        "evil": s("1-1", "b"),
    }
    d = diff(old, new)
    assert [c.name for c in d.added] == ["new"]
    assert [c.name for c in d.upgraded] == ["up"]
    assert [c.name for c in d.downgraded] == ["down"]
    assert [c.name for c in d.removed] == ["gone"]
    assert [c.name for c in d.unchanged] == ["same"]
    assert [c.name for c in d.content_changed] == ["evil"]
    assert d.changed
    assert d.summary()["upgraded"] == ["up 1-1 -> 1:0.5-1"]
    assert not diff(old, old).changed


_db = st.dictionaries(
    st.sampled_from(list("abcdefgh")),
    st.builds(PackageState, st.sampled_from(["1-1", "1-2", "2-1", "1:0-1"]), st.sampled_from("xy")),
)


@given(_db, _db)
def test_each_name_lands_in_exactly_one_category(
    old: dict[str, PackageState], new: dict[str, PackageState]
) -> None:
    d = diff(old, new)
    names = [
        c.name
        for cat in (d.added, d.upgraded, d.downgraded, d.removed, d.unchanged, d.content_changed)
        for c in cat
    ]
    assert sorted(names) == sorted(old.keys() | new.keys())
    back = diff(new, old)
    assert {c.name for c in back.upgraded} == {c.name for c in d.downgraded}
