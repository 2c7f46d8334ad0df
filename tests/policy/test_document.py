"""The signed policy and TUF-style rotation; statements parsed strictly."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reposeal.errors import InputError, VerificationError
from reposeal.evidence.statements import (
    Approval,
    Build,
    Override,
    Removal,
    StatementError,
    from_bytes,
    to_bytes,
)
from reposeal.policy.document import parse_policy, verify_policy
from tests.policy.world import COMMIT, PKGBUILD, World, person, sha


def sigs(raw: bytes, people: list) -> bytes:
    return b"".join(p.sign(raw) for p in people)


def test_policy_needs_its_admin_threshold(world: World) -> None:
    raw = world.policy().to_bytes()
    assert parse_policy(raw).version == 1
    assert verify_policy(raw, sigs(raw, world.admins[:2])).version == 1
    with pytest.raises(VerificationError, match="1 valid admin signatures, needs 2"):
        verify_policy(raw, sigs(raw, world.admins[:1] + world.maintainers[:2]))


def test_rotation_needs_higher_version_and_the_old_threshold(world: World, tmp_path: Path) -> None:
    v1 = world.policy()
    new_admins = [person(tmp_path, f"newadmin{i}") for i in range(2)]
    old_admins = world.admins
    world.admins = new_admins
    try:
        v2 = world.policy(version=2)
        stale = world.policy(version=1)
    finally:
        world.admins = old_admins
    raw2 = v2.to_bytes()
    ok = verify_policy(raw2, sigs(raw2, new_admins + old_admins[:2]), previous=v1)
    assert ok.version == 2
    with pytest.raises(VerificationError, match="signatures from the admins of v1"):
        verify_policy(raw2, sigs(raw2, new_admins + old_admins[:1]), previous=v1)
    raw_stale = stale.to_bytes()
    with pytest.raises(VerificationError, match="rollback refused"):
        verify_policy(raw_stale, sigs(raw_stale, new_admins + old_admins), previous=v1)


def test_impossible_or_tampered_policies(world: World) -> None:
    with pytest.raises(StatementError, match="threshold 4 for admins"):
        world.policy(admin_threshold=4)
    raw = world.policy().to_bytes()
    with pytest.raises(InputError):
        parse_policy(raw.replace(b'"version":1', b'"version":2'))  # subject no longer matches
    with pytest.raises(InputError, match="tampered"):
        verify_policy(raw.replace(b'"approvals":2', b'"approvals":3'), sigs(raw, world.admins))


GOOD = [
    Approval("core", "foo", COMMIT, PKGBUILD),
    Approval("core", "foo", COMMIT, PKGBUILD, "A" * 40),
    Build("foo", COMMIT, "foo-1-1-any.pkg.tar.zst", sha("f"), sha("b")),
    Removal("core", (("foo", "1-1"), ("bar", "2:0.1-3"))),
    Override("core", "foo", "downgrade", "2-1", "1-1", sha("f"), "nonce-123"),
]


@pytest.mark.parametrize("stmt", GOOD, ids=lambda s: type(s).__name__)
def test_statements_round_trip(stmt: object) -> None:
    raw = to_bytes(stmt)  # type: ignore[arg-type]
    assert from_bytes(raw) == stmt


BAD = {
    "not canonical": to_bytes(GOOD[0]).replace(b'{"_type"', b'{ "_type"'),
    "duplicate key": b'{"_type":"x","_type":"y"}',
    "float": to_bytes(GOOD[0]).replace(b'"repo":"core"', b'"repo":1.5'),
    "unknown predicate": to_bytes(GOOD[0]).replace(b"approval/v1", b"approval/v9"),
    "bad commit": to_bytes(GOOD[0]).replace(COMMIT.encode(), b"zz"),
    "extra field": to_bytes(GOOD[3]).replace(b'"repo":"core"', b'"evil":1,"repo":"core"'),
    "not json": b"\xff\xfe",
    "array": b"[]",
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_hostile_statements(case: str) -> None:
    with pytest.raises(StatementError):
        from_bytes(BAD[case])


@settings(max_examples=300, suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=400))
def test_fuzzed_statements_only_raise_statement_errors(data: bytes) -> None:
    base = to_bytes(GOOD[2])
    mutated = base[: len(data) % len(base)] + data
    with contextlib.suppress(StatementError):
        from_bytes(mutated)
