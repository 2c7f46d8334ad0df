"""The decision: may the enclave sign this database transition? Pure, no I/O.

Everything comes in already derived from bytes (package records from the database and the
package files, statements with their verified signers); this function only applies the rules
of DESIGN.md "Enclave policy" and lists every reason to refuse, so one run tells an operator
all that is missing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from reposeal.alpm.vercmp import vercmp
from reposeal.evidence.quorum import Signed, count
from reposeal.evidence.statements import Approval, Build, Override, Removal
from reposeal.policy.document import Policy


@dataclass(frozen=True)
class PackageRecord:
    """One package as the database and its file say (re-derived by the enclave)."""

    name: str
    version: str
    arch: str
    sha256: str
    filename: str
    pkgbase: str
    pkgbuild_sha256: str | None = None  # from the package's .BUILDINFO


@dataclass(frozen=True)
class SigningState:
    """What the enclave has signed so far (its log, replayed)."""

    last_db: Mapping[tuple[str, str], str] = field(default_factory=dict)  # (repo, arch) -> sha256
    highest: Mapping[tuple[str, str], str] = field(default_factory=dict)  # (repo, name) -> version
    bindings: Mapping[tuple[str, str, str], str] = field(default_factory=dict)  # name, ver, arch
    used_overrides: frozenset[str] = frozenset()  # sha256 of override statements
    origins: Mapping[tuple[str, str, str], str] = field(default_factory=dict)  # -> first repo


@dataclass(frozen=True)
class Request:
    repo: str
    arch: str
    parent: str | None  # sha256 of the database this one replaces (None: the first)
    db_sha256: str
    old: Mapping[str, PackageRecord]
    new: Mapping[str, PackageRecord]


@dataclass(frozen=True)
class Evidence:
    approvals: Sequence[Signed] = ()
    builds: Sequence[Signed] = ()
    removals: Sequence[Signed] = ()
    overrides: Sequence[Signed] = ()


@dataclass
class Decision:
    reasons: list[str] = field(default_factory=list)
    used_overrides: list[str] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        return not self.reasons


def _override_id(s: Signed) -> str:
    import hashlib

    return hashlib.sha256(s.raw).hexdigest()


def decide(state: SigningState, request: Request, evidence: Evidence, policy: Policy) -> Decision:
    d = Decision()
    repo, arch = request.repo, request.arch
    rule = policy.rule(repo)
    if rule is None or arch not in rule.arches:
        d.reasons.append(f"{repo}/{arch} is not a repository of policy v{policy.version}")
    if state.last_db.get((repo, arch)) != request.parent:
        d.reasons.append(
            f"parent {request.parent or 'none'} is not the last database signed for "
            f"{repo}/{arch} ({state.last_db.get((repo, arch)) or 'none'}): replay or fork"
        )

    overrides: dict[tuple[str, str, str, str, str], list[Signed]] = defaultdict(list)
    for s in evidence.overrides:
        o = s.statement
        if isinstance(o, Override) and o.repo == repo:
            overrides[(o.action, o.pkgname, o.from_version, o.to_version, o.sha256)].append(s)

    def use_override(action: str, name: str, frm: str, to: str, sha: str) -> bool:
        for s in overrides.get((action, name, frm, to, sha), []):
            oid = _override_id(s)
            if oid in state.used_overrides or oid in d.used_overrides:
                continue
            if len(s.signers) >= policy.admin_threshold:
                d.used_overrides.append(oid)
                return True
        return False

    builds_by_sha, build_signers, approvals = _index(evidence, repo)

    changed_bases: dict[str, set[str]] = defaultdict(set)
    for name, new in sorted(request.new.items()):
        old = request.old.get(name)
        if old is not None and old.sha256 == new.sha256 and old.version == new.version:
            continue  # unchanged: already decided when it came in
        where = f"{name} {new.version}"
        changed_bases[new.pkgbase].add(new.version)
        if new.arch not in (arch, "any"):
            d.reasons.append(f"{where}: architecture {new.arch} does not belong in {repo}/{arch}")
        if not new.filename.startswith(f"{name}-{new.version}-{new.arch}.pkg.tar"):
            d.reasons.append(
                f"{where}: file name {new.filename!r} does not match name, version and architecture"
            )
        highest = state.highest.get((repo, name))
        if highest is not None:
            order = vercmp(new.version, highest)
            if order < 0 and not use_override("downgrade", name, highest, new.version, new.sha256):
                d.reasons.append(
                    f"{where}: older than {highest}, the highest ever signed in "
                    f"{repo}; needs an admin override naming both versions"
                )
        if old is not None and old.version != new.version and vercmp(new.version, old.version) == 0:
            d.reasons.append(f"{where}: same version as {old.version} spelled differently")
        bound = state.bindings.get((name, new.version, new.arch))
        if (
            bound is not None
            and bound != new.sha256
            and not use_override("rebind", name, new.version, new.version, new.sha256)
        ):
            d.reasons.append(
                f"{where}: this version was signed with another file "
                f"({bound[:16]}…); a published version never changes"
            )
        if bound == new.sha256:
            origin = state.origins.get((name, new.version, new.arch), repo)
            origin_rule = policy.rule(origin)
            if origin == repo or (origin_rule is not None and repo in origin_rule.may_move_to):
                continue  # the very file signed before: its evidence was checked then
            # a move the policy does not allow by itself: it needs evidence for this repo
        _check_evidence(d, policy, where, new, builds_by_sha, build_signers, approvals)

    for base, versions in changed_bases.items():
        siblings = {n: r for n, r in request.new.items() if r.pkgbase == base}
        if len({r.version for r in siblings.values()}) > 1 or len(versions) > 1:
            d.reasons.append(
                f"pkgbase {base}: split packages must move together "
                f"({', '.join(f'{n} {r.version}' for n, r in sorted(siblings.items()))})"
            )

    removed = sorted(set(request.old) - set(request.new))
    if removed:
        signers: dict[str, list[frozenset[str]]] = defaultdict(list)
        for s in evidence.removals:
            r = s.statement
            if isinstance(r, Removal) and r.repo == repo:
                for n in r.pkgnames:
                    signers[n].append(s.signers)
        rule = policy.rule(repo)
        for name in removed:
            if rule is not None and _moved_up(state, rule.may_move_to, request.old[name]):
                continue  # it went up a layer (testing -> stable) and lives on there
            if count(signers.get(name, [])) < policy.approvals:
                d.reasons.append(
                    f"{name}: removal needs {policy.approvals} maintainer "
                    f"approvals, has {count(signers.get(name, []))}"
                )
    return d


def _moved_up(state: SigningState, layers: Iterable[str], old: PackageRecord) -> bool:
    """A package may leave a layer without a removal quorum once a layer it may move to
    (policy: ``may_move_to``) has had this version or a newer one signed into its database:
    the move, not a disappearance."""
    for layer in layers:
        highest = state.highest.get((layer, old.name))
        if highest is not None and vercmp(highest, old.version) >= 0:
            return True
    return False


_Index = tuple[
    dict[str, list[Build]],
    dict[tuple[str, str, str], set[str]],
    dict[tuple[str, str, str], list[Signed]],
]


def _index(evidence: Evidence, repo: str) -> _Index:
    """Builds by file sha256, builder keys per (sha256, pkgbase, commit), and approvals for
    ``repo`` per (pkgbase, commit, PKGBUILD sha256)."""
    builds_by_sha: dict[str, list[Build]] = defaultdict(list)
    build_signers: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for s in evidence.builds:
        b = s.statement
        if isinstance(b, Build):
            builds_by_sha[b.sha256].append(b)
            build_signers[(b.sha256, b.pkgbase, b.commit)] |= s.signers
    approvals: dict[tuple[str, str, str], list[Signed]] = defaultdict(list)
    for s in evidence.approvals:
        a = s.statement
        # a -debug repository holds what the approved source of its base repository built
        if isinstance(a, Approval) and a.repo in (repo, repo.removesuffix("-debug")):
            approvals[(a.pkgbase, a.commit, a.pkgbuild_sha256)].append(s)
    return builds_by_sha, build_signers, approvals


def _check_evidence(
    d: Decision,
    policy: Policy,
    where: str,
    new: PackageRecord,
    builds_by_sha: Mapping[str, list[Build]],
    build_signers: Mapping[tuple[str, str, str], set[str]],
    approvals: Mapping[tuple[str, str, str], list[Signed]],
) -> None:
    """Build quorum on the exact file, approval quorum on the source it was built from."""
    commits = {b.commit for b in builds_by_sha.get(new.sha256, []) if b.pkgbase == new.pkgbase}
    best = 0
    for commit in sorted(commits):
        builders = build_signers[(new.sha256, new.pkgbase, commit)]
        best = max(best, len(builders))
        if len(builders) < policy.builds:
            continue
        if new.pkgbuild_sha256 is None:
            d.reasons.append(f"{where}: the package has no .BUILDINFO pkgbuild_sha256sum")
            return
        approving = approvals.get((new.pkgbase, commit, new.pkgbuild_sha256), [])
        authors = frozenset(
            a.statement.author
            for a in approving
            if isinstance(a.statement, Approval) and a.statement.author
        )
        exclude = authors if policy.exclude_author else frozenset()
        have = count((a.signers for a in approving), exclude)
        if have >= policy.approvals:
            return
        d.reasons.append(
            f"{where}: source {new.pkgbase}@{commit[:12]} with this PKGBUILD has {have} "
            f"maintainer approvals (authors excluded), needs {policy.approvals}"
        )
        return
    d.reasons.append(
        f"{where}: {best} builders attest this exact file (sha256 {new.sha256[:16]}…), "
        f"needs {policy.builds} (reproducible-build quorum)"
    )


def apply(state: SigningState, request: Request, decision: Decision) -> SigningState:
    """The state after signing an accepted request (what the log records)."""
    if not decision.accepted:
        return state
    highest = dict(state.highest)
    bindings = dict(state.bindings)
    for name, r in request.new.items():
        h = highest.get((request.repo, name))
        if h is None or vercmp(r.version, h) > 0:
            highest[(request.repo, name)] = r.version
        bindings[(name, r.version, r.arch)] = r.sha256
    last = dict(state.last_db)
    last[(request.repo, request.arch)] = request.db_sha256
    return SigningState(
        last, highest, bindings, state.used_overrides | set(decision.used_overrides)
    )


def decide_packages(
    state: SigningState,
    repo: str,
    records: Mapping[str, PackageRecord],
    evidence: Evidence,
    policy: Policy,
) -> Decision:
    """May the enclave sign these package files (for ``repo``)? The per-package rules of a
    transition: file name, no downgrade below the highest signed, one file per version, and
    build plus approval quorums on the exact bytes."""
    d = Decision()
    if policy.rule(repo) is None:
        d.reasons.append(f"{repo} is not a repository of policy v{policy.version}")
    builds_by_sha, build_signers, approvals = _index(evidence, repo)
    for name, new in sorted(records.items()):
        where = f"{name} {new.version}"
        if not new.filename.startswith(f"{name}-{new.version}-{new.arch}.pkg.tar"):
            d.reasons.append(f"{where}: file name {new.filename!r} does not match the package")
        bound = state.bindings.get((name, new.version, new.arch))
        if bound == new.sha256:
            continue  # signed before: the same signature is returned
        if bound is not None:
            d.reasons.append(
                f"{where}: this version was signed with another file "
                f"({bound[:16]}…); a published version never changes"
            )
            continue
        highest = state.highest.get((repo, name))
        if highest is not None and vercmp(new.version, highest) < 0:
            d.reasons.append(f"{where}: older than {highest}, the highest ever signed in {repo}")
        _check_evidence(d, policy, where, new, builds_by_sha, build_signers, approvals)
    return d


def apply_packages(
    state: SigningState, repo: str, records: Mapping[str, PackageRecord]
) -> SigningState:
    """Signed package files bind their versions (and raise the highest version) at once."""
    highest = dict(state.highest)
    bindings = dict(state.bindings)
    origins = dict(state.origins)
    for name, r in records.items():
        h = highest.get((repo, name))
        if h is None or vercmp(r.version, h) > 0:
            highest[(repo, name)] = r.version
        bindings[(name, r.version, r.arch)] = r.sha256
        origins.setdefault((name, r.version, r.arch), repo)
    return SigningState(state.last_db, highest, bindings, state.used_overrides, origins)
