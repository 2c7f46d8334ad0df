"""The decision: may the enclave sign this? Pure, no I/O.

Everything comes in already derived from bytes the enclave read itself (package records
from the package files, statements with their verified signers, the state from its own log);
these functions only apply the rules of DESIGN.md "Enclave policy" and list every reason to
refuse, so one run tells an operator all that is missing.

A transition names what changes in one repository/architecture: package files to add (each
with its evidence, or as a move from a layer that holds it now), names to remove (each with
a removal quorum naming its version, or because a layer above holds it now). Nothing else
can be expressed: the enclave writes every entry of the database itself.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from reposeal.alpm.vercmp import vercmp
from reposeal.evidence.quorum import Signed, count
from reposeal.evidence.statements import Adoption, Approval, Build, Override, Removal
from reposeal.policy.document import Policy
from reposeal.policy.state import PackageRecord, SigningState

__all__ = [
    "Addition",
    "Decision",
    "Evidence",
    "PackageRecord",
    "SigningState",
    "Transition",
    "decide",
    "decide_adoption",
    "decide_packages",
    "statement_id",
]


@dataclass(frozen=True)
class Addition:
    """A package file to add: its record, and the layer it moves from (None: new, with
    evidence)."""

    record: PackageRecord
    moved_from: str | None = None


@dataclass(frozen=True)
class Transition:
    """A proposed change of one repository/architecture from its parent database."""

    repo: str
    arch: str
    parent: str | None  # sha256 of the database this one replaces (None: the first)
    adds: Mapping[str, Addition] = field(default_factory=dict)
    removes: Sequence[str] = ()


@dataclass(frozen=True)
class Evidence:
    approvals: Sequence[Signed] = ()
    builds: Sequence[Signed] = ()
    removals: Sequence[Signed] = ()
    overrides: Sequence[Signed] = ()
    adoptions: Sequence[Signed] = ()


@dataclass
class Decision:
    reasons: list[str] = field(default_factory=list)
    used_overrides: list[str] = field(default_factory=list)
    used_removals: list[str] = field(default_factory=list)  # "sha256:arch:name"
    admitted: dict[str, list[str]] = field(default_factory=dict)  # name -> approvals used

    @property
    def accepted(self) -> bool:
        return not self.reasons


def statement_id(s: Signed) -> str:
    return hashlib.sha256(s.raw).hexdigest()


class _Overrides:
    """Admin overrides for one repository, each usable once."""

    def __init__(self, evidence: Evidence, repo: str, state: SigningState, d: Decision) -> None:
        self.by_key: dict[tuple[str, str, str, str, str], list[Signed]] = defaultdict(list)
        for s in evidence.overrides:
            o = s.statement
            if isinstance(o, Override) and o.repo == repo:
                self.by_key[(o.action, o.pkgname, o.from_version, o.to_version, o.sha256)].append(s)
        self.state, self.d = state, d

    def use(self, action: str, name: str, frm: str, to: str, sha: str, threshold: int) -> bool:
        for s in self.by_key.get((action, name, frm, to, sha), []):
            oid = statement_id(s)
            if oid in self.state.used_overrides or oid in self.d.used_overrides:
                continue
            if len(s.signers) >= threshold:
                self.d.used_overrides.append(oid)
                return True
        return False


def _version_rules(
    d: Decision,
    state: SigningState,
    repo: str,
    new: PackageRecord,
    overrides: _Overrides,
    policy: Policy,
) -> None:
    """No downgrade below the highest version ever signed in ``repo``; one file per version."""
    where = f"{new.name} {new.version}"
    highest = state.highest.get((repo, new.name))
    threshold = policy.admin_threshold
    if (
        highest is not None
        and vercmp(new.version, highest) < 0
        and not overrides.use("downgrade", new.name, highest, new.version, new.sha256, threshold)
    ):
        d.reasons.append(
            f"{where}: older than {highest}, the highest ever signed in "
            f"{repo}; needs an admin override naming both versions"
        )
    bound = state.bindings.get((new.name, new.version, new.arch))
    if (
        bound is not None
        and bound != new.sha256
        and not overrides.use("rebind", new.name, new.version, new.version, new.sha256, threshold)
    ):
        d.reasons.append(
            f"{where}: this version was signed with another file "
            f"({bound[:16]}…); a published version never changes"
        )


def _record_rules(d: Decision, name: str, new: PackageRecord, repo: str, arch: str) -> None:
    """What a listed record must be, whatever brings it: its own name, an architecture of
    the repository, a file name that says both."""
    where = f"{name} {new.version}"
    if new.name != name:
        d.reasons.append(f"{where}: listed under another name ({new.name})")
    if new.arch not in (arch, "any"):
        d.reasons.append(f"{where}: architecture {new.arch} does not belong in {repo}/{arch}")
    _file_name_rule(d, new)


def _file_name_rule(d: Decision, new: PackageRecord) -> None:
    if not new.filename.startswith(f"{new.name}-{new.version}-{new.arch}.pkg.tar"):
        d.reasons.append(
            f"{new.name} {new.version}: file name {new.filename!r} does not match name, "
            "version and architecture"
        )


def decide(state: SigningState, t: Transition, evidence: Evidence, policy: Policy) -> Decision:
    """May the enclave sign the database that ``t`` makes of its parent?"""
    d = Decision()
    repo, arch = t.repo, t.arch
    rule = policy.rule(repo)
    if rule is None or arch not in rule.arches:
        d.reasons.append(f"{repo}/{arch} is not a repository of policy v{policy.version}")
    if state.last_db.get((repo, arch)) != t.parent:
        d.reasons.append(
            f"parent {t.parent or 'none'} is not the last database signed for "
            f"{repo}/{arch} ({state.last_db.get((repo, arch)) or 'none'}): replay or fork"
        )
    if not t.adds and not t.removes:
        d.reasons.append("the transition changes nothing")
    both = sorted(set(t.adds) & set(t.removes))
    if both:
        d.reasons.append(f"{', '.join(both)}: added and removed in one transition")
    overrides = _Overrides(evidence, repo, state, d)
    index = _index(evidence, repo, state.spent)
    for name, add in sorted(t.adds.items()):
        new = add.record
        where = f"{name} {new.version}"
        _record_rules(d, name, new, repo, arch)
        if new.sha256 not in state.signatures:
            d.reasons.append(
                f"{where}: the enclave has not signed this package file; a database lists "
                "only files it signed (send a packages job first)"
            )
        _version_rules(d, state, repo, new, overrides, policy)
        old = state.holds(repo, arch, name)
        if old is not None and old.version != new.version and vercmp(new.version, old.version) == 0:
            d.reasons.append(f"{where}: same version as {old.version} spelled differently")
        if old is not None and old == new:
            d.reasons.append(f"{where}: {repo}/{arch} holds this very file already")
            continue
        if add.moved_from is not None:
            _move_rule(d, state, policy, t, add)
            continue
        used = _check_evidence(d, policy, where, new, index)
        if used is not None:
            d.admitted[name] = used
    _split_rule(d, state, t)
    _removal_rules(d, state, t, evidence, policy)
    return d


def _move_rule(
    d: Decision, state: SigningState, policy: Policy, t: Transition, add: Addition
) -> None:
    """A file enters without new evidence only as a move the policy allows, from a layer
    that holds that very file now."""
    new, frm = add.record, str(add.moved_from)
    where = f"{new.name} {new.version}"
    rule = policy.rule(frm)
    if rule is None or t.repo not in rule.may_move_to:
        d.reasons.append(f"{where}: the policy does not let {frm} move to {t.repo}")
        return
    there = state.holds(frm, t.arch, new.name)
    if there is None or there.sha256 != new.sha256:
        d.reasons.append(
            f"{where}: {frm}/{t.arch} does not hold this file now; a move takes only what "
            "the lower layer holds"
        )


def _split_rule(d: Decision, state: SigningState, t: Transition) -> None:
    """Split packages of one pkgbase carry one version in a database."""
    held = state.current.get((t.repo, t.arch), {})
    bases = {a.record.pkgbase for a in t.adds.values()}
    for base in sorted(bases):
        after = {n: r for n, r in held.items() if r.pkgbase == base and n not in t.removes}
        after |= {n: a.record for n, a in t.adds.items() if a.record.pkgbase == base}
        if len({r.version for r in after.values()}) > 1:
            d.reasons.append(
                f"pkgbase {base}: split packages must move together "
                f"({', '.join(f'{n} {r.version}' for n, r in sorted(after.items()))})"
            )


def _removal_rules(
    d: Decision, state: SigningState, t: Transition, evidence: Evidence, policy: Policy
) -> None:
    """A removal names a package the database holds, and has a quorum of maintainers
    approving removing that very version (each statement used once per architecture), or
    the package went up a layer, which holds that version or a newer one now."""
    by_package: dict[tuple[str, str], list[Signed]] = defaultdict(list)
    for s in evidence.removals:
        r = s.statement
        if isinstance(r, Removal) and r.repo == t.repo:
            for name, version in r.packages:
                by_package[(name, version)].append(s)
    rule = policy.rule(t.repo)
    for name in sorted(set(t.removes)):
        old = state.holds(t.repo, t.arch, name)
        if old is None:
            d.reasons.append(f"{name}: {t.repo}/{t.arch} does not hold it; nothing to remove")
            continue
        if rule is not None and _moved_up(state, rule.may_move_to, t.arch, old):
            continue  # it went up a layer (testing -> stable) and lives on there
        fresh = [
            s
            for s in by_package.get((name, old.version), [])
            if f"{statement_id(s)}:{t.arch}:{name}" not in state.used_removals
        ]
        have = count(s.signers for s in fresh)
        if have < policy.approvals:
            d.reasons.append(
                f"{name} {old.version}: removal needs {policy.approvals} maintainer approvals "
                f"naming this version, has {have} (each removal statement is used once)"
            )
            continue
        d.used_removals += [f"{statement_id(s)}:{t.arch}:{name}" for s in fresh]


def _moved_up(state: SigningState, layers: Sequence[str], arch: str, old: PackageRecord) -> bool:
    """Does a layer this one may move to (policy: ``may_move_to``) hold this version or a
    newer one now? Then leaving is the second half of a move, not a disappearance."""
    for layer in layers:
        there = state.holds(layer, arch, old.name)
        if there is not None and vercmp(there.version, old.version) >= 0:
            return True
    return False


@dataclass(frozen=True)
class _Index:
    builds_by_sha: Mapping[str, list[Build]]
    build_signers: Mapping[tuple[str, str, str], set[str]]  # (sha256, pkgbase, commit)
    approvals: Mapping[tuple[str, str, str], list[Signed]]  # (pkgbase, commit, PKGBUILD)


def _index(evidence: Evidence, repo: str, spent: frozenset[str]) -> _Index:
    """Builds by file sha256, builder keys per (sha256, pkgbase, commit), and the approvals
    for ``repo`` not spent by a removal, per (pkgbase, commit, PKGBUILD sha256)."""
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
        if not isinstance(a, Approval) or a.repo not in (repo, repo.removesuffix("-debug")):
            continue
        if statement_id(s) not in spent:
            approvals[(a.pkgbase, a.commit, a.pkgbuild_sha256)].append(s)
    return _Index(builds_by_sha, build_signers, approvals)


def _check_evidence(
    d: Decision, policy: Policy, where: str, new: PackageRecord, index: _Index
) -> list[str] | None:
    """Build quorum on the exact file, approval quorum on the source it was built from.
    Returns the approvals used (None: refused, with the reason added)."""
    commits = {
        b.commit for b in index.builds_by_sha.get(new.sha256, []) if b.pkgbase == new.pkgbase
    }
    best = 0
    for commit in sorted(commits):
        builders = index.build_signers[(new.sha256, new.pkgbase, commit)]
        best = max(best, len(builders))
        if len(builders) < policy.builds:
            continue
        if new.pkgbuild_sha256 is None:
            d.reasons.append(f"{where}: the package has no .BUILDINFO pkgbuild_sha256sum")
            return None
        approving = index.approvals.get((new.pkgbase, commit, new.pkgbuild_sha256), [])
        authors = frozenset(
            a.statement.author
            for a in approving
            if isinstance(a.statement, Approval) and a.statement.author
        )
        exclude = authors if policy.exclude_author else frozenset()
        have = count((a.signers for a in approving), exclude)
        if have >= policy.approvals:
            return sorted(statement_id(a) for a in approving)
        d.reasons.append(
            f"{where}: source {new.pkgbase}@{commit[:12]} with this PKGBUILD has {have} "
            f"maintainer approvals (authors excluded; approvals spent by a removal do not "
            f"count), needs {policy.approvals}"
        )
        return None
    d.reasons.append(
        f"{where}: {best} builders attest this exact file (sha256 {new.sha256[:16]}…), "
        f"needs {policy.builds} (reproducible-build quorum)"
    )
    return None


def decide_packages(
    state: SigningState,
    repo: str,
    records: Mapping[str, PackageRecord],
    evidence: Evidence,
    policy: Policy,
) -> Decision:
    """May the enclave sign these package files (for ``repo``)? The per-package rules of a
    transition: file name, no downgrade below the highest signed, one file per version, and
    build plus approval quorums on the exact bytes. A file signed before gets its logged
    signature back (never a second signature), which needs no new evidence: a signature on
    a package file puts it in no database."""
    d = Decision()
    if policy.rule(repo) is None:
        d.reasons.append(f"{repo} is not a repository of policy v{policy.version}")
    overrides = _Overrides(evidence, repo, state, d)
    index = _index(evidence, repo, state.spent)
    for name, new in sorted(records.items()):
        _file_name_rule(d, new)
        if state.bindings.get((name, new.version, new.arch)) == new.sha256:
            continue  # signed before: the same signature is returned
        _version_rules(d, state, repo, new, overrides, policy)
        used = _check_evidence(d, policy, f"{name} {new.version}", new, index)
        if used is not None:
            d.admitted[name] = used
    return d


def decide_adoption(
    state: SigningState,
    t: Transition,
    evidence: Evidence,
    policy: Policy,
    packager_signed: frozenset[str] = frozenset(),
    keyring_sha256: str | None = None,
) -> Decision:
    """May the enclave sign the first databases of ``t.repo``/``t.arch`` from an existing
    repository's files? Only with an adoption statement signed by the admin threshold that
    names exactly these files (by sha256), on a repository the enclave never signed, and,
    when the statement names a packagers' keyring (``keyring_sha256``, the one the job
    carries), a valid packager signature on every file (``packager_signed``: their sha256).
    From then on the adopted versions are bound like any signed ones."""
    d = Decision()
    repo, arch = t.repo, t.arch
    rule = policy.rule(repo)
    if rule is None or arch not in rule.arches:
        d.reasons.append(f"{repo}/{arch} is not a repository of policy v{policy.version}")
    if state.last_db.get((repo, arch)) is not None or t.parent is not None:
        d.reasons.append(
            f"{repo}/{arch} has a signed database already: only a repository the enclave "
            "never signed can be adopted"
        )
    if t.removes:
        d.reasons.append("an adoption removes nothing")
    statements = [(s, a) for s in evidence.adoptions if isinstance(a := s.statement, Adoption)
                  and a.repo == repo and a.arch == arch]  # fmt: skip
    if len(statements) != 1:
        d.reasons.append(f"an adoption needs exactly one adoption statement for {repo}/{arch}")
        return d
    signed, stmt = statements[0]
    if len(signed.signers) < policy.admin_threshold:
        d.reasons.append(
            f"the adoption is signed by {len(signed.signers)} admins; policy "
            f"v{policy.version} needs {policy.admin_threshold}"
        )
    if stmt.keyring_sha256 != keyring_sha256:
        d.reasons.append("the packagers' keyring is not the one the adoption statement names")
    named = dict(stmt.files)
    given = {a.record.filename: a.record.sha256 for a in t.adds.values()}
    for filename in sorted(set(named) - set(given)):
        d.reasons.append(f"{filename}: named by the adoption, but not in the job")
    for filename, sha in sorted(given.items()):
        if filename not in named:
            d.reasons.append(f"{filename}: not named by the adoption statement")
        elif named[filename] != sha:
            d.reasons.append(
                f"{filename}: sha256 {sha[:16]}… is not the {named[filename][:16]}… the "
                "adoption names"
            )
    overrides = _Overrides(evidence, repo, state, d)
    for name, add in sorted(t.adds.items()):
        new = add.record
        _record_rules(d, name, new, repo, arch)
        _version_rules(d, state, repo, new, overrides, policy)
        if keyring_sha256 is not None and new.sha256 not in packager_signed:
            d.reasons.append(f"{new.filename}: no valid packager signature with the keyring")
    return d
