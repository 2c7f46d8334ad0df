"""The repository-key rules, pure: switching keys waits out the overlap; revoking the old
key waits for its successor; the key the enclave signs with stays named."""

from __future__ import annotations

from reposeal.policy.keys import rotation_problems, switch_problems
from tests.policy.world import World

HOUR = 3600.0


def test_switching_keys(world: World) -> None:
    old, new, other = world.admins[2], world.builders[2], world.maintainers[2]
    keys = {"current": [old.cert], "next": [new.cert]}
    policy = world.policy(repository_keys=keys, key_overlap_seconds=int(HOUR))
    now = 10 * HOUR
    assert switch_problems(policy, new.fpr, old.fpr, now - 2 * HOUR, now) == []
    early = switch_problems(policy, new.fpr, old.fpr, now - 0.5 * HOUR, now)
    assert early and "first named 0.5 hours ago" in early[0]
    assert "does not name key" in switch_problems(policy, other.fpr, old.fpr, 0, now)[0]
    assert "already" in switch_problems(policy, old.fpr, old.fpr, 0, now)[0]


def test_revoking_the_former_key(world: World) -> None:
    old, new = world.admins[2], world.builders[2]
    revoking = world.policy(
        version=2,
        repository_keys={"current": [new.cert], "revoked": [old.cert]},
        key_overlap_seconds=int(HOUR),
    )
    now = 10 * HOUR
    assert rotation_problems(revoking, new.fpr, {old.fpr: now - 2 * HOUR}, now) == []
    early = rotation_problems(revoking, new.fpr, {old.fpr: now - 0.2 * HOUR}, now)
    assert early and "stopped signing 0.2 hours ago" in early[0]
    orphan = rotation_problems(revoking, old.fpr, {old.fpr: None}, now)
    assert orphan and "switch keys first" in orphan[0]
