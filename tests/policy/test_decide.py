"""Every policy rule, accepting and refusing, with real keys and real signatures; and the one
``apply`` that turns signatures into the state the next decision sees."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reposeal.alpm.vercmp import vercmp
from reposeal.evidence.statements import Override
from reposeal.policy.decide import (
    Addition,
    Decision,
    Evidence,
    SigningState,
    Transition,
    decide,
    decide_packages,
)
from reposeal.policy.document import Policy, RepoRule
from reposeal.policy.entries import PackagesEntry, TransitionEntry, apply
from reposeal.policy.state import PackageRecord, restrict
from tests.policy.world import COMMIT, World, merge, rec, sha


def layered(world: World) -> Policy:
    return world.policy(
        repos=[
            RepoRule("testing", ("x86_64",), ("core",)),
            RepoRule("core", ("x86_64",)),
            RepoRule("extra", ("x86_64",)),
        ]
    )


def t(
    adds: list[PackageRecord] = (),  # type: ignore[assignment]
    removes: list[str] = (),  # type: ignore[assignment]
    parent: str | None = None,
    repo: str = "core",
    arch: str = "x86_64",
    moved_from: str | None = None,
) -> Transition:
    return Transition(
        repo, arch, parent, {r.name: Addition(r, moved_from) for r in adds}, tuple(removes)
    )


def signed(*records: PackageRecord) -> SigningState:
    """The state once the enclave signed these package files (nothing published yet)."""
    state = SigningState()
    for r in records:
        state = apply(state, PackagesEntry("core", {r.name: r}, {r.sha256: "c2ln"}))
    return state


def published(
    state: SigningState,
    d: Decision,
    request: Transition,
    db: str,
) -> SigningState:
    """The state after the enclave signed ``request`` as database ``db``."""
    assert d.accepted, d.reasons
    entry = TransitionEntry(
        request.repo,
        request.arch,
        request.parent,
        db,
        {n: a.record for n, a in request.adds.items()},
        {n: a.moved_from for n, a in request.adds.items() if a.moved_from},
        tuple(request.removes),
        tuple(d.used_overrides),
        tuple(d.used_removals),
        {n: tuple(v) for n, v in d.admitted.items()},
    )
    return apply(state, entry)


def in_core(world: World, policy: Policy, *records: PackageRecord) -> SigningState:
    """``records`` signed and published in core/x86_64 (as database "db0")."""
    state = signed(*records)
    request = t(list(records))
    ev = merge(*(world.evidence_for(r, policy) for r in records))
    return published(state, decide(state, request, ev, policy), request, "db0")


def test_new_package_with_full_evidence_is_accepted(world: World, policy: Policy) -> None:
    p = rec("foo", "1.0-1")
    d = decide(signed(p), t([p]), world.evidence_for(p, policy), policy)
    assert d.accepted, d.reasons
    assert len(d.admitted["foo"]) == 1


def test_a_package_file_the_enclave_did_not_sign_is_not_listed(
    world: World, policy: Policy
) -> None:
    p = rec("foo", "1.0-1")
    d = decide(SigningState(), t([p]), world.evidence_for(p, policy), policy)
    assert any("has not signed this package file" in r for r in d.reasons)


def test_parent_must_be_the_last_signed_database(world: World, policy: Policy) -> None:
    a, b = rec("a", "1-1"), rec("b", "1-1")
    state = in_core(world, policy, a)
    state = apply(state, PackagesEntry("core", {"b": b}, {b.sha256: "c2ln"}))
    ev = world.evidence_for(b, policy)
    assert decide(state, t([b], parent="db0"), ev, policy).accepted
    for parent in ("db-old", None):  # a replay of an older request, or a fork from nothing
        d = decide(state, t([b], parent=parent), ev, policy)
        assert any("replay or fork" in r for r in d.reasons)


def test_unknown_repository_or_architecture_and_empty_transitions(
    world: World, policy: Policy
) -> None:
    p = rec("foo", "1.0-1", arch="aarch64")
    d = decide(signed(p), t([p], arch="aarch64"), world.evidence_for(p, policy), policy)
    assert any("not a repository" in r for r in d.reasons)
    assert any(
        "changes nothing" in r for r in decide(SigningState(), t(), Evidence(), policy).reasons
    )


def test_build_quorum(world: World, policy: Policy) -> None:
    p = rec("foo", "1.0-1")
    state = signed(p)
    one = decide(state, t([p]), world.evidence_for(p, policy, builders=1), policy)
    assert any("1 builders attest" in r for r in one.reasons)
    # builders attesting a different file do not count for this one
    other = rec("foo", "1.0-1", content="a different build")
    d = decide(state, t([p]), world.evidence_for(other, policy), policy)
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
    assert not decide(state, t([p]), Evidence(ev.approvals, [both]), policy).accepted


def test_approval_quorum_and_author_exclusion(world: World, policy: Policy) -> None:
    p = rec("foo", "1.0-1")
    state = signed(p)
    d = decide(state, t([p]), world.evidence_for(p, policy, approvers=1), policy)
    assert any("1 maintainer approvals" in r for r in d.reasons)
    author = world.maintainers[0].fpr
    d = decide(state, t([p]), world.evidence_for(p, policy, author=author), policy)
    assert any("authors excluded" in r for r in d.reasons)
    ok = decide(state, t([p]), world.evidence_for(p, policy, approvers=3, author=author), policy)
    assert ok.accepted
    lax = world.policy(exclude_author=False)
    assert decide(state, t([p]), world.evidence_for(p, lax, author=author), lax).accepted


def test_buildinfo_pkgbuild_must_match_the_approved_one(world: World, policy: Policy) -> None:
    p = rec("foo", "1.0-1", pkgbuild=sha("a different recipe"))
    assert not decide(signed(p), t([p]), world.evidence_for(p, policy), policy).accepted
    bare = rec("foo", "1.0-1", pkgbuild=None)
    d = decide(signed(bare), t([bare]), world.evidence_for(bare, policy), policy)
    assert any("BUILDINFO" in r for r in d.reasons)


def test_filename_must_match(world: World, policy: Policy) -> None:
    p = rec("foo", "1.0-1", filename="foo-9.9-1-x86_64.pkg.tar.zst")
    d = decide(signed(p), t([p]), world.evidence_for(p, policy), policy)
    assert any("file name" in r for r in d.reasons)


def test_downgrade_refused_unless_overridden_once(world: World, policy: Policy) -> None:
    old, new = rec("foo", "2.0-1"), rec("foo", "1.0-1")
    state = apply(
        in_core(world, policy, old), PackagesEntry("core", {"foo": new}, {new.sha256: "x"})
    )
    ev = world.evidence_for(new, policy)
    d = decide(state, t([new], parent="db0"), ev, policy)
    assert any("older than 2.0-1" in r for r in d.reasons)
    o = Override("core", "foo", "downgrade", "2.0-1", "1.0-1", new.sha256, "nonce-0001")
    weak = merge(ev, Evidence(overrides=[world.override(o, policy, n=1)]))
    assert not decide(state, t([new], parent="db0"), weak, policy).accepted
    strong = merge(ev, Evidence(overrides=[world.override(o, policy)]))
    d = decide(state, t([new], parent="db0"), strong, policy)
    after = published(state, d, t([new], parent="db0"), "db1")
    assert after.highest[("core", "foo")] == "2.0-1"  # the highest ever signed stays
    # the same override cannot be used again
    assert not decide(after, t([new], parent="db1"), strong, policy).accepted
    wrong = Override("core", "foo", "downgrade", "2.0-1", "0.5-1", new.sha256, "nonce-0002")
    other = merge(ev, Evidence(overrides=[world.override(wrong, policy)]))
    assert not decide(state, t([new], parent="db0"), other, policy).accepted


def test_epoch_upgrade_and_respelled_version(world: World, policy: Policy) -> None:
    old = rec("foo", "2.0-1")
    base = in_core(world, policy, old)
    epoch = rec("foo", "1:0.1-1")
    state = apply(base, PackagesEntry("core", {"foo": epoch}, {epoch.sha256: "x"}))
    assert decide(
        state, t([epoch], parent="db0"), world.evidence_for(epoch, policy), policy
    ).accepted
    respelled = rec("foo", "2.00-1")
    state = apply(base, PackagesEntry("core", {"foo": respelled}, {respelled.sha256: "x"}))
    d = decide(state, t([respelled], parent="db0"), world.evidence_for(respelled, policy), policy)
    assert any("spelled differently" in r for r in d.reasons)


def test_never_sign_two_files_under_one_version(world: World, policy: Policy) -> None:
    first = rec("foo", "1.0-1")
    other = rec("foo", "1.0-1", content="rebuilt differently")
    state = apply(in_core(world, policy, first), PackagesEntry("core", {}, {other.sha256: "x"}))
    d = decide(state, t([other], parent="db0"), world.evidence_for(other, policy), policy)
    assert any("another file" in r for r in d.reasons)
    o = Override("core", "foo", "rebind", "1.0-1", "1.0-1", other.sha256, "nonce-rebind")
    ev = merge(world.evidence_for(other, policy), Evidence(overrides=[world.override(o, policy)]))
    assert decide(state, t([other], parent="db0"), ev, policy).accepted
    # the very file a repository holds already: nothing to do
    again = decide(state, t([first], parent="db0"), world.evidence_for(first, policy), policy)
    assert any("holds this very file already" in r for r in again.reasons)


def test_a_file_signed_once_enters_another_repository_only_with_evidence(
    world: World, policy: Policy
) -> None:
    """Class 7: origins are never dropped, and a file bound before skips no evidence check."""
    p = rec("foo", "1.0-1")
    state = in_core(world, policy, p)
    assert state.origins[("foo", "1.0-1", "x86_64")] == {"core"}
    d = decide(state, t([p], repo="extra"), Evidence(), policy)
    assert any("builders attest" in r for r in d.reasons)
    # core's approvals are not extra's
    d = decide(state, t([p], repo="extra"), world.evidence_for(p, policy), policy)
    assert any("maintainer approvals" in r for r in d.reasons)


def test_moves_follow_the_policy_and_take_only_what_the_lower_layer_holds(
    world: World,
) -> None:
    pol = layered(world)
    p = rec("foo", "1.0-1")
    state = signed(p)
    request = t([p], repo="testing")
    ev = world.evidence_for(p, pol, repo="testing")
    state = published(state, decide(state, request, ev, pol), request, "dbT")
    # testing -> core is an allowed move: the same file needs no new evidence
    move = t([p], moved_from="testing")
    assert decide(state, move, Evidence(), pol).accepted
    # testing -> extra is not
    d = decide(state, t([p], repo="extra", moved_from="testing"), Evidence(), pol)
    assert any("does not let testing move to extra" in r for r in d.reasons)
    # a file testing does not hold (any more) cannot move
    gone = published(state, Decision(), t(removes=["foo"], repo="testing", parent="dbT"), "dbT2")
    d = decide(gone, move, Evidence(), pol)
    assert any("does not hold this file now" in r for r in d.reasons)
    newer = rec("foo", "1.0-2")
    d = decide(state, t([newer], moved_from="testing"), Evidence(), pol)
    assert any("does not hold this file now" in r for r in d.reasons)


def test_split_packages_move_together(world: World, policy: Policy) -> None:
    a1, b1 = rec("lib-a", "1-1", pkgbase="lib"), rec("lib-b", "1-1", pkgbase="lib")
    a2, b2 = rec("lib-a", "2-1", pkgbase="lib"), rec("lib-b", "2-1", pkgbase="lib")
    state = in_core(world, policy, a1, b1)
    state = apply(state, PackagesEntry("core", {}, {a2.sha256: "x", b2.sha256: "x"}))
    half = decide(state, t([a2], parent="db0"), world.evidence_for(a2, policy), policy)
    assert any("move together" in r for r in half.reasons)
    both = merge(world.evidence_for(a2, policy), world.evidence_for(b2, policy))
    assert decide(state, t([a2, b2], parent="db0"), both, policy).accepted


def test_removals_need_a_quorum_naming_the_version_and_are_used_once(
    world: World, policy: Policy
) -> None:
    a, b = rec("a", "1-1"), rec("b", "1-1")
    state = in_core(world, policy, a, b)
    d = decide(state, t(removes=["b"], parent="db0"), Evidence(), policy)
    assert any("removal needs 2" in r for r in d.reasons)
    weak = Evidence(removals=[world.removal((("b", "1-1"),), policy, n=1)])
    assert not decide(state, t(removes=["b"], parent="db0"), weak, policy).accepted
    other_version = Evidence(removals=[world.removal((("b", "0.9-1"),), policy)])
    assert not decide(state, t(removes=["b"], parent="db0"), other_version, policy).accepted
    ok = Evidence(removals=[world.removal((("b", "1-1"),), policy)])
    d = decide(state, t(removes=["b"], parent="db0"), ok, policy)
    after = published(state, d, t(removes=["b"], parent="db0"), "db1")
    assert after.holds("core", "x86_64", "b") is None
    missing = decide(after, t(removes=["b"], parent="db1"), ok, policy)
    assert any("does not hold it" in r for r in missing.reasons)
    # b comes back with new approvals; the old removal statement does not remove it again
    b_again = rec("b", "1-1")
    fresh = world.evidence_for(b_again, policy, commit="f" * 40)
    back = decide(after, t([b_again], parent="db1"), fresh, policy)
    after2 = published(after, back, t([b_again], parent="db1"), "db2")
    d = decide(after2, t(removes=["b"], parent="db2"), ok, policy)
    assert any("used once" in r for r in d.reasons)


def test_a_package_removed_by_quorum_comes_back_only_with_new_approvals(
    world: World, policy: Policy
) -> None:
    """Class 7: the approvals that admitted a removed package are spent."""
    p = rec("foo", "1.0-1")
    state = in_core(world, policy, p)
    removal = Evidence(removals=[world.removal((("foo", "1.0-1"),), policy)])
    d = decide(state, t(removes=["foo"], parent="db0"), removal, policy)
    gone = published(state, d, t(removes=["foo"], parent="db0"), "db1")
    old = world.evidence_for(p, policy)
    d = decide(gone, t([p], parent="db1"), old, policy)
    assert any("spent by a removal" in r for r in d.reasons)
    new = world.evidence_for(p, policy, commit="b" * 40)
    assert decide(gone, t([p], parent="db1"), new, policy).accepted


def test_a_package_moved_up_a_layer_leaves_the_lower_one_without_a_removal_quorum(
    world: World,
) -> None:
    pol = layered(world)
    b = rec("b", "2-1")
    state = signed(b)
    up = t([b], repo="testing")
    ev = world.evidence_for(b, pol, repo="testing")
    state = published(state, decide(state, up, ev, pol), up, "dbT")
    leave = t(removes=["b"], repo="testing", parent="dbT")
    d = decide(state, leave, Evidence(), pol)
    assert any("b 2-1: removal needs 2" in r for r in d.reasons)
    moved = published(state, Decision(), t([b], moved_from="testing"), "dbC")
    assert decide(moved, leave, Evidence(), pol).accepted
    # extra is not a layer above testing: holding it there does not count
    elsewhere = published(state, Decision(), t([b], repo="extra"), "dbE")
    assert not decide(elsewhere, leave, Evidence(), pol).accepted


def test_all_reasons_are_listed_at_once(world: World, policy: Policy) -> None:
    p = rec("foo", "1.0-1", filename="bad.pkg.tar.zst")
    d = decide(SigningState(last_db={("core", "x86_64"): "dbX"}), t([p]), Evidence(), policy)
    assert len(d.reasons) >= 4
    assert COMMIT  # the evidence helpers default to this commit


def test_package_signing_needs_evidence_unless_signed_before(world: World, policy: Policy) -> None:
    p = rec("foo", "1.0-1")
    assert not decide_packages(SigningState(), "core", {"foo": p}, Evidence(), policy).accepted
    assert decide_packages(signed(p), "core", {"foo": p}, Evidence(), policy).accepted
    assert decide_packages(
        SigningState(), "core", {"foo": p}, world.evidence_for(p, policy), policy
    ).accepted


def test_restrict_keeps_what_the_rules_look_up(world: World, policy: Policy) -> None:
    a1, b1 = rec("lib-a", "1-1", pkgbase="lib"), rec("lib-b", "1-1", pkgbase="lib")
    c = rec("c", "1-1")
    state = in_core(world, policy, a1, b1, c)
    small = restrict(state, ["lib-a"], ["lib"], [a1.sha256])
    assert set(small.current[("core", "x86_64")]) == {"lib-a", "lib-b"}
    assert set(small.signatures) == {a1.sha256}
    assert set(small.bindings) == {("lib-a", "1-1", "x86_64")}


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
    state, parent = SigningState(), None
    cache: dict[str, Evidence] = {}
    for i, (name, version, content, replay) in enumerate(steps):
        r = rec(name, version, content=f"{name}{version}{content}")
        if r.sha256 not in cache:
            cache[r.sha256] = world.evidence_for(r, policy)
        state = apply(state, PackagesEntry("core", {}, {r.sha256: "x"}))
        request = t([r], parent="db-old" if replay else parent)
        d = decide(state, request, cache[r.sha256], policy)
        if not d.accepted:
            continue
        assert not replay or parent == "db-old"
        highest = state.highest.get(("core", name))
        assert highest is None or vercmp(version, highest) >= 0
        bound = state.bindings.get((name, version, "x86_64"))
        assert bound is None or bound == r.sha256
        state, parent = published(state, d, request, f"db{i}"), f"db{i}"


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
    d = decide(signed(p), t([p]), world.evidence_for(p, pol, approvers=2), pol)
    assert any("1 maintainer approvals" in r for r in d.reasons)


_moves = st.lists(
    st.tuples(
        st.sampled_from(["core", "extra"]),
        st.sampled_from(["x86_64", "aarch64"]),
        st.sampled_from(["a", "b", "c", "lib-a", "lib-b"]),
        st.sampled_from(["1-1", "2-1"]),
        st.booleans(),  # True: add, False: remove
    ),
    max_size=12,
)


@settings(max_examples=100, deadline=None)
@given(moves=_moves, names=st.sets(st.sampled_from(["a", "b", "lib-a", "zz"])))
def test_the_name_index_restricts_as_restrict_does(
    moves: list[tuple[str, str, str, str, bool]], names: set[str]
) -> None:
    from reposeal.policy.state import NameIndex

    state, index = SigningState(), NameIndex()
    for repo, arch, name, version, add in moves:
        r = rec(name, version, arch=arch, pkgbase="lib" if name.startswith("lib") else None)
        if add:
            packages = PackagesEntry(repo, {name: r}, {r.sha256: "sig"})
            state = apply(state, packages)
            index.learn(repo, None, [r])
            entry = TransitionEntry(repo, arch, None, "db", {name: r}, admitted={name: ("x",)})
            index.learn(repo, arch, [r])
        else:
            entry = TransitionEntry(repo, arch, None, "db", {}, removes=(name,))
        state = apply(state, entry)
    shas = [rec(n, v, arch=a).sha256 for n in names for v in ("1-1", "2-1")
            for a in ("x86_64", "aarch64")]  # fmt: skip
    assert index.restrict(state, names, ["lib"], shas) == restrict(state, names, ["lib"], shas)
