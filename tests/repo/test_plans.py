"""A cycle's plan, as the cycles' database keeps it: every kind of cycle round-trips, and
the plans rows hold from before the record was typed read the same."""

from __future__ import annotations

import json

import pytest

from reposeal.repo.plans import CyclePlan

SHA = "a" * 64

PLANS = [
    CyclePlan((("hello", "c" * 40), ("(removal)", SHA)), {"hello-1-1-any.pkg.tar.zst": SHA},
              ("old",), {"evidence/x.json": SHA}),
    CyclePlan((("(move)", "m1"),), {"f.pkg.tar.zst": SHA}, moved_from="testing",
              names=("f",), package_signatures={"f.pkg.tar.zst": "c2ln"}),
    CyclePlan((("(move)", "m1"),), remove=("f",)),
    CyclePlan((("(adoption)", SHA),), {"f.pkg.tar.zst": SHA}, evidence={"keyring.pgp": SHA},
              package_signatures={}, adopt=True, compression=".zst"),
]  # fmt: skip


@pytest.mark.parametrize("plan", PLANS)
def test_a_plan_round_trips_through_its_json(plan: CyclePlan) -> None:
    assert CyclePlan.from_json(json.loads(json.dumps(plan.to_json()))) == plan


def test_a_plan_written_before_it_was_typed_reads_the_same() -> None:
    old = {"sources": [["(move)", "m1"]], "packages": {"f.pkg.tar.zst": SHA}, "remove": [],
           "evidence": {}, "moved_from": "testing", "package_signatures": {"f.pkg.tar.zst": "c2ln"},
           "names": ["f"]}  # fmt: skip
    assert CyclePlan.from_json(old) == PLANS[1]
    assert CyclePlan.from_json(old).to_json() == old, "the same row, written again"
