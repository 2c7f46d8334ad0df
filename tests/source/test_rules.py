"""The source machine's decisions: who counts towards an approval quorum, who wrote a
change, and where two builders' packages differ."""

from __future__ import annotations

from reposeal.evidence.quorum import Signed
from reposeal.evidence.statements import Approval, to_bytes
from reposeal.source.rules import author_key, differences, tally


def signed(repo: str, *keys: str) -> Signed:
    stmt = Approval(repo, "hello", "c" * 40, "p" * 64, "AUTHOR")
    return Signed(stmt, to_bytes(stmt), frozenset(keys))


def test_the_author_counts_only_if_the_policy_says_so() -> None:
    approvals = [signed("core", "AUTHOR", "M1"), signed("core", "M2"), signed("extra", "M3")]
    strict = tally(approvals, "core", "AUTHOR", 2, exclude_author=True)
    assert strict.signers == {"M1", "M2"} and strict.excluded == {"AUTHOR"} and strict.reached
    one = tally(approvals[:1], "core", "AUTHOR", 2, exclude_author=True)
    assert not one.reached and "author's own approval does not count" in one.missing()[0]
    lenient = tally(approvals[:1], "core", "AUTHOR", 2, exclude_author=False)
    assert lenient.signers == {"AUTHOR", "M1"} and lenient.reached
    assert tally(approvals, "extra", None, 2, exclude_author=True).signers == {"M3"}


def test_the_author_is_the_maintainer_with_that_email() -> None:
    maintainers = [("ab12", ["Alice <Alice@Example.org>"]), ("cd34", ["Bob <bob@example.org>"])]
    assert author_key("alice@example.org", maintainers) == "AB12"
    assert author_key("mallory@example.org", maintainers) is None
    assert author_key("bob@example.org", [("x", ["bob@example.org"])]) is None  # no <...>


def test_builders_that_disagree_are_shown_file_by_file() -> None:
    good = {"hello-1-1-any.pkg.tar.zst": ("aa", {"usr/": "dir", "usr/m": "1", ".BUILDINFO": "b"})}
    bad = {
        "hello-1-1-any.pkg.tar.zst": (
            "bb",
            {"usr/": "dir", "usr/m": "2", "usr/x": "3", ".BUILDINFO": "b"},
        )
    }
    assert differences({"b0": good, "b1": good}) == []
    (line,) = differences({"b0": good, "b1": bad})
    assert "content differs in usr/m" in line and "only b1 has usr/x" in line
    (line,) = differences({"b0": good, "b1": {}})
    assert "only b0 made it" in line
