"""Counting signers, bounded by the keyring and not by the signature file: a flood of
foreign or repeated packets is not verified, and cannot push out an honest signature."""

from __future__ import annotations

from reposeal.evidence.quorum import valid_signers
from reposeal.evidence.statements import Approval, to_bytes
from tests.policy.world import World, sha


def test_a_flood_of_signatures_costs_nothing_and_pushes_out_nobody(world: World) -> None:
    policy = world.policy()
    raw = to_bytes(Approval("core", "foo", "a" * 40, sha("PKGBUILD")))
    honest = b"".join(m.sign(raw) for m in world.maintainers[:2])
    assert world.outsider is not None
    foreign = world.outsider.sign(raw) * 200  # someone not in the keyring
    # a maintainer's key named on signatures over other bytes (an issuer can name anyone)
    repeated = b"".join(world.maintainers[0].sign(f"other {i}".encode()) for i in range(50))
    for flood in (foreign + honest, repeated + honest, honest + foreign + repeated):
        signers = valid_signers(raw, flood, policy.keyrings["maintainers"])
        assert signers == {m.fpr.upper() for m in world.maintainers[:2]}


def test_kept_signature_files_hold_one_valid_signature_per_key(world: World) -> None:
    from reposeal.evidence.quorum import one_per_signer

    policy = world.policy()
    keyring = policy.keyrings["maintainers"]
    raw = to_bytes(Approval("core", "foo", "a" * 40, sha("PKGBUILD")))
    m0, m1 = world.maintainers[:2]
    assert world.outsider is not None
    noise = world.outsider.sign(raw) * 50 + m0.sign(b"other") * 20 + b"".join(
        m0.sign(raw) for _ in range(5)
    )  # fmt: skip
    kept = one_per_signer(raw, noise + m1.sign(raw), keyring)
    assert valid_signers(raw, kept, keyring) == {m0.fpr.upper(), m1.fpr.upper()}
    assert len(kept) < 1000  # two packets, whatever was sent
