"""The order of the stability layers, as `repo move` keeps it (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from reposeal.policy.document import Policy, RepoRule
from reposeal.repo.move import Held, layer_problems
from tests.policy.world import World, make_world


@pytest.fixture(scope="module")
def policy(tmp_path_factory: pytest.TempPathFactory) -> Policy:
    world: World = make_world(Path(tmp_path_factory.mktemp("world")))
    return world.policy(
        repos=[
            RepoRule("staging", ("x86_64",), ("testing", "core")),
            RepoRule("testing", ("x86_64",), ("core",)),
            RepoRule("core", ("x86_64",)),
            RepoRule("extra", ("x86_64",)),
        ]
    )


def v(version: str) -> Held:
    return Held(version, {"foo": (f"foo-{version}-any.pkg.tar.zst", "0" * 64)})


CASES = [
    # (from, to, held, the problem expected, or None)
    ("testing", "core", {"testing": v("2-1"), "core": v("1-1")}, None),
    ("staging", "testing", {"staging": v("3-1"), "testing": v("2-1")}, None),
    ("staging", "core", {"staging": v("3-1"), "testing": v("2-1")}, "never jumps over"),
    ("staging", "core", {"staging": v("3-1")}, None),  # nothing between: a direct move
    ("testing", "core", {"testing": v("2-1"), "staging": v("1-1")}, "would be newer"),
    ("testing", "core", {"testing": v("2-1"), "staging": v("3-1")}, None),
    ("testing", "core", {"testing": v("2-1"), "core": v("2-2")}, "holds a newer"),
    ("core", "testing", {"core": v("2-1")}, "does not let core move to testing"),
    ("testing", "extra", {"testing": v("2-1")}, "does not let testing move to extra"),
    ("testing", "core", {}, "testing does not hold foo"),
    ("nowhere", "core", {}, "nowhere is not a repository"),
]


@pytest.mark.parametrize(("frm", "to", "held", "problem"), CASES)
def test_layers_keep_their_order(
    policy: Policy, frm: str, to: str, held: dict[str, Held], problem: str | None
) -> None:
    problems = layer_problems("foo", frm, to, policy, held)
    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1 and problem in problems[0], problems


def test_a_recorded_move_reads_back_as_requested(tmp_path: Path) -> None:
    from reposeal.repo.cycles import Cycles
    from reposeal.repo.move import Move

    cycles = Cycles(tmp_path)
    move = Move("hello-testing-core-1.5", "hello", "testing", "core")
    cycles.add_move(move)
    cycles.add_move(move)  # the same request twice is one move
    assert cycles.moves() == [move]
    assert move.to_json() == {"id": move.id, "pkgbase": "hello", "from": "testing", "to": "core"}
