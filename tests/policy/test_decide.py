"""Every policy rule, accepting and refusing, with real keys and real signatures."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reposeal.alpm.vercmp import vercmp
from reposeal.evidence.statements import Override
from reposeal.policy.decide import Evidence, Request, SigningState, apply, decide
from reposeal.policy.document import Policy
from tests.policy.world import COMMIT, World, make_world, merge, rec, sha


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return make_world(tmp_path_factory.mktemp("world"))


@pytest.fixture(scope="module")
def policy(world: World) -> Policy:
    return world.policy()


def req(
    new: list,
    old: list | None = None,
    parent: str | None = None,
    db: str = "db1",
    repo: str = "core",
    arch: str = "x86_64",
) -> Request:
    return Request(repo, arch, parent, db, {r.name: r for r in old or []}, {r.name: r for r in new})


def signed_state(*records, parent: str = "db0") -> SigningState:
    return SigningState(
        last_db={("core", "x86_64"): parent},
        highest={("core", r.name): r.version for r in records},
        bindings={(r.name, r.version, r.arch): r.sha256 for r in records},
    )


def test_new_package_with_full_evidence_is_accepted(world: World, policy: Policy) -> None:
    p = rec("foo", "1.0-1")
    d = decide(SigningState(), req([p]), world.evidence_for(p, policy), policy)
    assert d.accepted, d.reasons


def test_parent_must_be_the_last_signed_database(world: World, policy: Policy) -> None:
    p = rec("foo", "1.0-1")
    ev = world.evidence_for(p, policy)
    state = signed_state(parent="db7")
    assert decide(state, req([p], parent="db7"), ev, policy).accepted
    for parent in ("db6", None):  # a replay of an older request, or a fork from nothing
        d = decide(state, req([p], parent=parent), ev, policy)
        assert any("replay or fork" in r for r in d.reasons)


def test_unknown_repository_or_architecture(world: World, policy: Policy) -> None:
    p = rec("foo", "1.0-1", arch="aarch64")
    d = decide(SigningState(), req([p], arch="aarch64"), world.evidence_for(p, policy), policy)
    assert any("not a repository" in r for r in d.reasons)


def test_build_quorum(world: World, policy: Policy) -> None:
    p = rec("foo", "1.0-1")
    one = decide(SigningState(), req([p]), world.evidence_for(p, policy, builders=1), policy)
    assert any("1 builders attest" in r for r in one.reasons)
    # builders attesting a different file do not count for this one
    other = rec("foo", "1.0-1", content="a different build")
    d = decide(SigningState(), req([p]), world.evidence_for(other, policy), policy)
    assert any("0 builders attest" in r for r in d.reasons)
    # an outsider's signature counts for nothing
    assert world.outsider is not None
    ev = world.evidence_for(p, policy, builders=1)
    raw = ev.builds[0].raw
    from reposeal.evidence.quorum import load_signed

    both = load_signed(
        raw, world.builders[0].sign(raw) + world.outsider.sign(raw), policy.keyrings["builders"]
    )
    assert len(both.signers) == 1
    d = decide(SigningState(), req([p]), Evidence(ev.approvals, [both]), policy)
    assert not d.accepted


def test_approval_quorum_and_author_exclusion(world: World, policy: Policy) -> None:
    p = rec("foo", "1.0-1")
    d = decide(SigningState(), req([p]), world.evidence_for(p, policy, approvers=1), policy)
    assert any("1 maintainer approvals" in r for r in d.reasons)
    author = world.maintainers[0].fpr
    d = decide(SigningState(), req([p]), world.evidence_for(p, policy, author=author), policy)
    assert any("authors excluded" in r for r in d.reasons)
    ok = decide(
        SigningState(), req([p]), world.evidence_for(p, policy, approvers=3, author=author), policy
    )
    assert ok.accepted
    lax = world.policy(exclude_author=False)
    assert decide(SigningState(), req([p]), world.evidence_for(p, lax, author=author), lax).accepted


def test_buildinfo_pkgbuild_must_match_the_approved_one(world: World, policy: Policy) -> None:
    p = rec("foo", "1.0-1", pkgbuild=sha("a different recipe"))
    d = decide(SigningState(), req([p]), world.evidence_for(p, policy), policy)
    assert not d.accepted  # approvals are for PKGBUILD v1, the package was built from another
    no_buildinfo = rec("foo", "1.0-1", pkgbuild=None)
    d = decide(
        SigningState(), req([no_buildinfo]), world.evidence_for(no_buildinfo, policy), policy
    )
    assert any("BUILDINFO" in r for r in d.reasons)


def test_filename_must_match(world: World, policy: Policy) -> None:
    p = rec("foo", "1.0-1", filename="foo-9.9-1-x86_64.pkg.tar.zst")
    d = decide(SigningState(), req([p]), world.evidence_for(p, policy), policy)
    assert any("file name" in r for r in d.reasons)


def test_downgrade_refused_unless_overridden_once(world: World, policy: Policy) -> None:
    old = rec("foo", "2.0-1")
    new = rec("foo", "1.0-1")
    state = signed_state(old)
    ev = world.evidence_for(new, policy)
    d = decide(state, req([new], [old], parent="db0"), ev, policy)
    assert any("older than 2.0-1" in r for r in d.reasons)
    o = Override("core", "foo", "downgrade", "2.0-1", "1.0-1", new.sha256, "nonce-0001")
    weak = merge(ev, Evidence(overrides=[world.override(o, policy, n=1)]))
    assert not decide(state, req([new], [old], parent="db0"), weak, policy).accepted
    strong = merge(ev, Evidence(overrides=[world.override(o, policy)]))
    d = decide(state, req([new], [old], parent="db0"), strong, policy)
    assert d.accepted, d.reasons
    after = apply(state, req([new], [old], parent="db0"), d)
    assert after.highest[("core", "foo")] == "2.0-1"  # the highest ever signed stays
    # the same override cannot be used again
    again = decide(after, req([new], [old], parent="db1", db="db2"), strong, policy)
    assert not again.accepted
    # an override for other versions does not apply
    wrong = Override("core", "foo", "downgrade", "2.0-1", "0.5-1", new.sha256, "nonce-0002")
    d = decide(
        state,
        req([new], [old], parent="db0"),
        merge(ev, Evidence(overrides=[world.override(wrong, policy)])),
        policy,
    )
    assert not d.accepted


def test_epoch_upgrade_and_respelled_version(world: World, policy: Policy) -> None:
    old = rec("foo", "2.0-1")
    epoch = rec("foo", "1:0.1-1")
    d = decide(
        signed_state(old),
        req([epoch], [old], parent="db0"),
        world.evidence_for(epoch, policy),
        policy,
    )
    assert d.accepted, d.reasons
    respelled = rec("foo", "2.00-1")
    d = decide(
        signed_state(old),
        req([respelled], [old], parent="db0"),
        world.evidence_for(respelled, policy),
        policy,
    )
    assert any("spelled differently" in r for r in d.reasons)


def test_never_sign_two_files_under_one_version(world: World, policy: Policy) -> None:
    first = rec("foo", "1.0-1")
    other = rec("foo", "1.0-1", content="rebuilt differently")
    state = signed_state(first)
    d = decide(
        state, req([other], [first], parent="db0"), world.evidence_for(other, policy), policy
    )
    assert any("another file" in r for r in d.reasons)
    # the same file again (re-added after a removal) needs nothing new
    assert decide(state, req([first], [], parent="db0"), Evidence(), policy).accepted
    o = Override("core", "foo", "rebind", "1.0-1", "1.0-1", other.sha256, "nonce-rebind")
    ev = merge(world.evidence_for(other, policy), Evidence(overrides=[world.override(o, policy)]))
    assert decide(state, req([other], [first], parent="db0"), ev, policy).accepted


def test_moves_between_repositories_follow_the_policy(world: World) -> None:
    from reposeal.policy.document import RepoRule

    pol = world.policy(
        repos=[
            RepoRule("testing", ("x86_64",), ("core",)),
            RepoRule("core", ("x86_64",)),
            RepoRule("extra", ("x86_64",)),
        ]
    )
    p = rec("foo", "1.0-1")
    in_testing = SigningState(
        last_db={("core", "x86_64"): "db0", ("extra", "x86_64"): "dbE"},
        bindings={("foo", "1.0-1", "x86_64"): p.sha256},
        origins={("foo", "1.0-1", "x86_64"): "testing"},
    )
    # testing -> core is an allowed move: the same file needs no new evidence
    assert decide(in_testing, req([p], parent="db0"), Evidence(), pol).accepted
    # testing -> extra is not: it needs the full evidence for extra
    d = decide(in_testing, req([p], parent="dbE", repo="extra"), Evidence(), pol)
    assert any("builders attest" in r for r in d.reasons)


def test_split_packages_move_together(world: World, policy: Policy) -> None:
    a1, b1 = rec("lib-a", "1-1", pkgbase="lib"), rec("lib-b", "1-1", pkgbase="lib")
    a2, b2 = rec("lib-a", "2-1", pkgbase="lib"), rec("lib-b", "2-1", pkgbase="lib")
    state = signed_state(a1, b1)
    half = decide(
        state, req([a2, b1], [a1, b1], parent="db0"), world.evidence_for(a2, policy), policy
    )
    assert any("move together" in r for r in half.reasons)
    both = merge(world.evidence_for(a2, policy), world.evidence_for(b2, policy))
    assert decide(state, req([a2, b2], [a1, b1], parent="db0"), both, policy).accepted


def test_removals_need_a_quorum(world: World, policy: Policy) -> None:
    a, b = rec("a", "1-1"), rec("b", "1-1")
    state = signed_state(a, b)
    d = decide(state, req([a], [a, b], parent="db0"), Evidence(), policy)
    assert any("removal needs 2" in r for r in d.reasons)
    weak = Evidence(removals=[world.removal(("b",), policy, n=1)])
    assert not decide(state, req([a], [a, b], parent="db0"), weak, policy).accepted
    ok = Evidence(removals=[world.removal(("b",), policy)])
    assert decide(state, req([a], [a, b], parent="db0"), ok, policy).accepted


def test_a_package_moved_up_a_layer_leaves_the_lower_one_without_a_removal_quorum(
    world: World,
) -> None:
    from reposeal.policy.document import RepoRule

    pol = world.policy(
        repos=[
            RepoRule("testing", ("x86_64",), ("core",)),
            RepoRule("core", ("x86_64",)),
            RepoRule("extra", ("x86_64",)),
        ]
    )
    a, b = rec("a", "1-1"), rec("b", "2-1")
    state = SigningState(
        last_db={("testing", "x86_64"): "db0"},
        highest={("testing", "a"): "1-1", ("testing", "b"): "2-1", ("extra", "b"): "3-1"},
    )
    leave = req([a], [a, b], parent="db0", repo="testing")
    d = decide(state, leave, Evidence(), pol)
    assert any("b: removal needs 2" in r for r in d.reasons), "extra is not a layer above"
    for version in ("2-1", "2-2", "1:0-1"):  # core has had this version, or a newer one
        moved = SigningState(state.last_db, {**state.highest, ("core", "b"): version})
        assert decide(moved, leave, Evidence(), pol).accepted, version
    older = SigningState(state.last_db, {**state.highest, ("core", "b"): "1.9-1"})
    assert not decide(older, leave, Evidence(), pol).accepted, "core only has an older one"


def test_all_reasons_are_listed_at_once(world: World, policy: Policy) -> None:
    p = rec("foo", "1.0-1", filename="bad.pkg.tar.zst")
    d = decide(signed_state(parent="dbX"), req([p], parent="db0"), Evidence(), policy)
    assert len(d.reasons) >= 3
    assert COMMIT  # the evidence helpers default to this commit


_steps = st.lists(
    st.tuples(
        st.sampled_from(["a", "b"]),
        st.sampled_from(["1-1", "2-1", "1:0-1", "0.5-1"]),
        st.sampled_from(["x", "y"]),
        st.booleans(),
    ),
    min_size=1,
    max_size=10,
)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(steps=_steps)
def test_random_transitions_never_accept_a_downgrade_or_a_double_binding(
    world: World, policy: Policy, steps: list[tuple[str, str, str, bool]]
) -> None:
    state, current, parent = SigningState(), {}, None
    cache: dict[str, Evidence] = {}
    for i, (name, version, content, replay) in enumerate(steps):
        r = rec(name, version, content=f"{name}{version}{content}")
        if r.sha256 not in cache:
            cache[r.sha256] = world.evidence_for(r, policy)
        new = {**current, name: r}
        request = Request("core", "x86_64", "db-old" if replay else parent, f"db{i}", current, new)
        d = decide(state, request, cache[r.sha256], policy)
        if not d.accepted:
            continue
        assert not replay or parent == "db-old"
        highest = state.highest.get(("core", name))
        assert highest is None or vercmp(version, highest) >= 0
        bound = state.bindings.get((name, version, "x86_64"))
        assert bound is None or bound == r.sha256
        state, current, parent = apply(state, request, d), new, f"db{i}"


def test_revoked_keys_count_for_nothing(world: World) -> None:
    import pysequoia

    victim = world.maintainers[1]
    tsk = pysequoia.Tsk.from_file(str(victim.signer.path))
    cert = tsk.extract_certificate()
    revoked = pysequoia.Cert.from_bytes(bytes(cert) + bytes(cert.revoke(tsk.certifier())))
    pol = world.policy(
        certs={
            "admins": [p.cert for p in world.admins],
            "maintainers": [world.maintainers[0].cert, str(revoked), world.maintainers[2].cert],
            "builders": [p.cert for p in world.builders],
        }
    )
    p = rec("foo", "1.0-1")
    d = decide(SigningState(), req([p]), world.evidence_for(p, pol, approvers=2), pol)
    assert any("1 maintainer approvals" in r for r in d.reasons)
