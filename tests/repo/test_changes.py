"""The pure update planner: every rule accepts and refuses."""

from __future__ import annotations

from reposeal.alpm.desc import PackageFacts
from reposeal.alpm.pkginfo import PkgInfo
from reposeal.alpm.syncdb import Entry
from reposeal.repo.changes import AddRules, plan_add, plan_remove


def entry(name: str, version: str, sha: str = "a" * 64, pgpsig: str = "") -> Entry:
    info = PkgInfo(name=name, version=version, arch="any")
    facts = PackageFacts(info, f"{name}-{version}-any.pkg.tar.zst", 1, "0" * 32, sha, pgpsig)
    return Entry.from_package(facts, [])


CUR = {"a": entry("a", "1.0-1"), "b": entry("b", "2.0-1")}


def test_add_new_and_upgrade() -> None:
    plan = plan_add(CUR, [entry("c", "1-1"), entry("a", "1.1-1")], AddRules())
    assert plan.added == ["c 1-1"]
    assert plan.upgraded == ["a 1.0-1 -> 1.1-1"]
    assert plan.replaced_files == ["a-1.0-1-any.pkg.tar.zst"]
    assert plan.entries["a"].version == "1.1-1"
    assert not plan.refusals


def test_downgrade_refused_skipped_or_forced() -> None:
    older = [entry("b", "1:1.0-1"[2:])]
    assert "older" in plan_add(CUR, older, AddRules()).refusals[0]
    skipped = plan_add(CUR, older, AddRules(skip_downgrades=True))
    assert skipped.skipped and not skipped.changed
    forced = plan_add(CUR, older, AddRules(allow_downgrade=True))
    assert forced.downgraded == ["b 2.0-1 -> 1.0-1"] and not forced.refusals


def test_epoch_makes_lower_looking_version_an_upgrade() -> None:
    plan = plan_add(CUR, [entry("b", "1:0.1-1")], AddRules())
    assert plan.upgraded == ["b 2.0-1 -> 1:0.1-1"]


def test_same_version_other_content_refused() -> None:
    plan = plan_add(CUR, [entry("a", "1.0-1", sha="b" * 64)], AddRules())
    assert "different content" in plan.refusals[0]
    assert plan_add(CUR, [entry("a", "1.0-1", sha="b" * 64)], AddRules(only_new=True)).skipped


def test_same_file_again_is_a_no_op_and_new_signature_refreshes() -> None:
    assert not plan_add(CUR, [entry("a", "1.0-1")], AddRules()).changed
    plan = plan_add(CUR, [entry("a", "1.0-1", pgpsig="c2ln")], AddRules())
    assert plan.refreshed == ["a 1.0-1"]


def test_vercmp_equal_but_different_spelling_is_refused() -> None:
    plan = plan_add(CUR, [entry("a", "1.00-1", sha="b" * 64)], AddRules())
    assert plan.refusals


def test_same_name_twice_in_one_request_takes_the_newest_whatever_the_order() -> None:
    for given in ([entry("c", "1.10-1"), entry("c", "1.9-1")],
                  [entry("c", "1.9-1"), entry("c", "1.10-1")]):  # fmt: skip
        plan = plan_add(CUR, given, AddRules())
        assert not plan.refusals and plan.entries["c"].version == "1.10-1"
        assert plan.skipped == ["c 1.9-1: older than 1.10-1, given too"]
    same = plan_add(CUR, [entry("c", "1-1"), entry("c", "1-1", sha="e" * 64)], AddRules())
    assert "twice" in same.refusals[0]
    again = plan_add(CUR, [entry("c", "1-1"), entry("c", "1-1")], AddRules())
    assert not again.refusals and again.added == ["c 1-1"]


def test_remove() -> None:
    plan = plan_remove(CUR, ["a"])
    assert plan.removed == ["a 1.0-1"] and set(plan.entries) == {"b"}
    assert "no such package" in plan_remove(CUR, ["zzz"]).refusals[0]
