"""Witnesses in the policy document: kept through its canonical form, checked, and shipped
to users in the keyring package as a C2SP tlog-policy."""

from __future__ import annotations

import pytest

from reposeal.evidence.statements import StatementError
from reposeal.keyring.build import keyring_files, pkgbuild
from reposeal.policy.document import WitnessRule, parse_policy
from reposeal.translog.cosignature import Cosigner
from reposeal.translog.witnesspolicy import parse
from tests.policy.world import World


def rules(n: int) -> list[WitnessRule]:
    return [
        WitnessRule(f"w{i}", Cosigner.generate(f"w{i}.example").key.encode(), f"http://w{i}:1")
        for i in range(n)
    ]


def test_witnesses_survive_the_policys_canonical_form(world: World) -> None:
    policy = world.policy(witnesses=rules(3), witness_quorum=2)
    again = parse_policy(policy.to_bytes())
    assert again.witnesses == policy.witnesses and again.witness_quorum == 2
    wp = parse(again.witness_policy().render())
    names = [w.key.name for w in wp.witnesses]
    assert wp.satisfied(names[:2]) and not wp.satisfied(names[:1])
    assert "witnesses" not in world.policy().predicate(), "old policies keep their bytes"


@pytest.mark.parametrize(
    ("witnesses", "quorum", "why"),
    [
        (rules(2), 3, "quorum"),
        (rules(2), 0, "quorum"),
        ([], 1, "needs witnesses"),
        ([*rules(1), *rules(1)], 1, "named once"),
        ([WitnessRule("w", "not-a-key", "http://w:1")], 1, "witnesses"),
        ([WitnessRule("w", rules(1)[0].key, "ftp://w")], 1, "URL"),
    ],
)
def test_a_witness_setup_that_cannot_work_is_refused(
    world: World, witnesses: list[WitnessRule], quorum: int, why: str
) -> None:
    with pytest.raises(StatementError, match=why):
        world.policy(witnesses=witnesses, witness_quorum=quorum)


def test_the_keyring_package_carries_the_witness_policy(world: World) -> None:
    policy = world.policy(
        witnesses=rules(3), witness_quorum=2, repository_keys={"current": [world.admins[2].cert]}
    )
    files = keyring_files("demo", policy)
    assert parse(files["demo-witnesses.policy"].decode()).witnesses
    text = pkgbuild("demo", 1, files)
    assert 'install -Dm644 -t "$pkgdir/usr/share/reposeal/" demo-witnesses.policy' in text
