"""The policy: who may approve, build and administer, and how many must agree.

It is itself a signed statement (canonical JSON, in-toto Statement v1, predicate
``https://reposeal.dev/policy/v1``) with detached admin signatures. Rotation is TUF's root
rotation: a new policy needs a higher version, its own admin threshold, and the threshold of
the policy it replaces.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pysequoia

from reposeal import canonical
from reposeal.alpm.names import check_arch, check_name
from reposeal.errors import ReposealError, VerificationError
from reposeal.evidence.quorum import valid_signers
from reposeal.evidence.statements import PREFIX, STATEMENT_TYPE, StatementError, load_json
from reposeal.openpgp.verify import Keyring

if TYPE_CHECKING:
    from reposeal.translog.witnesspolicy import WitnessPolicy

PREDICATE_TYPE = f"{PREFIX}policy/v1"
ROLES = ("admins", "maintainers", "builders")
# the repository's signing keys, for the keyring package pacman users install: the keys that
# sign now, the one that takes over next (both trusted during the overlap), revoked ones
KEY_KINDS = ("current", "next", "revoked")


@dataclass(frozen=True)
class RepoRule:
    name: str
    arches: tuple[str, ...]
    may_move_to: tuple[str, ...] = ()


@dataclass(frozen=True)
class WitnessRule:
    """A witness the log's checkpoints must be cosigned by: its name in the policy, its
    cosignature vkey, and the URL of its tlog-witness submission prefix."""

    name: str
    key: str
    url: str


@dataclass(frozen=True)
class Policy:
    version: int
    keyrings: dict[str, Keyring]
    admin_threshold: int
    approvals: int
    builds: int
    repos: tuple[RepoRule, ...]
    db_signature_validity_seconds: int = 7 * 86400
    exclude_author: bool = True
    armored: tuple[tuple[str, tuple[str, ...]], ...] = ()  # role -> certs, as written
    repository_keys: tuple[tuple[str, tuple[str, ...]], ...] = ()  # kind -> certs, as written
    # how long a next key is named (so users' keyrings trust it) before the enclave may
    # switch to it
    key_overlap_seconds: int = 0
    witnesses: tuple[WitnessRule, ...] = ()
    witness_quorum: int = 0  # how many of them must cosign a checkpoint before publication

    def witness_policy(self) -> WitnessPolicy:
        """The witnesses as a C2SP tlog-policy: any ``witness_quorum`` of them."""
        from reposeal.translog.cosignature import CosignerKey
        from reposeal.translog.witnesspolicy import WitnessEntry, k_of_n

        entries = [WitnessEntry(w.name, CosignerKey.decode(w.key), w.url) for w in self.witnesses]
        return k_of_n(entries, self.witness_quorum)

    def repo_keys(self, kind: str) -> Keyring:
        """The repository keys of one kind ("current", "next" or "revoked")."""
        certs = dict(self.repository_keys).get(kind, ())
        blob = "\n".join(certs).encode()
        return Keyring(tuple(pysequoia.Cert.split_bytes(blob))) if blob else Keyring(())

    def may_sign(self, fingerprint: str) -> bool:
        """May the repository key ``fingerprint`` sign? (Any key, if the policy names none.)"""
        if not self.repository_keys:
            return True
        allowed = {
            *self.repo_keys("current").fingerprints(),
            *self.repo_keys("next").fingerprints(),
        }
        return fingerprint.upper() in allowed

    def rule(self, repo: str) -> RepoRule | None:
        return next((r for r in self.repos if r.name == repo), None)

    def predicate(self) -> dict[str, Any]:
        certs = dict(self.armored)
        return {
            "version": self.version,
            **{role: list(certs.get(role, ())) for role in ROLES},
            "thresholds": {
                "admins": self.admin_threshold,
                "approvals": self.approvals,
                "builds": self.builds,
            },
            "repos": [
                {"name": r.name, "arches": list(r.arches), "may_move_to": list(r.may_move_to)}
                for r in self.repos
            ],
            "db_signature_validity_seconds": self.db_signature_validity_seconds,
            "exclude_author": self.exclude_author,
            **(
                {"repository_keys": {k: list(v) for k, v in self.repository_keys}}
                if self.repository_keys
                else {}
            ),
            **(
                {"key_overlap_seconds": self.key_overlap_seconds}
                if self.key_overlap_seconds
                else {}
            ),
            **(
                {
                    "witnesses": {
                        "quorum": self.witness_quorum,
                        "members": [
                            {"name": w.name, "key": w.key, "url": w.url} for w in self.witnesses
                        ],
                    }
                }
                if self.witnesses
                else {}
            ),
        }

    def to_bytes(self) -> bytes:
        predicate = self.predicate()
        digest = hashlib.sha256(canonical.dumps(predicate)).hexdigest()
        return canonical.dumps(
            {
                "_type": STATEMENT_TYPE,
                "subject": [{"name": "reposeal-policy", "digest": {"sha256": digest}}],
                "predicateType": PREDICATE_TYPE,
                "predicate": predicate,
            }
        )

    @classmethod
    def build(
        cls,
        *,
        version: int,
        certs: dict[str, list[str]],
        admin_threshold: int,
        approvals: int,
        builds: int,
        repos: list[RepoRule],
        db_signature_validity_seconds: int = 7 * 86400,
        exclude_author: bool = True,
        repository_keys: dict[str, list[str]] | None = None,
        key_overlap_seconds: int = 0,
        witnesses: list[WitnessRule] | None = None,
        witness_quorum: int = 0,
    ) -> Policy:
        """Make (and check) a policy from armored certificates per role (and, optionally,
        the repository's keys by kind: current, next, revoked)."""
        keyrings = {}
        for role in ROLES:
            blob = "\n".join(certs.get(role, [])).encode()
            keyrings[role] = (
                Keyring(tuple(pysequoia.Cert.split_bytes(blob))) if blob else Keyring(())
            )
        policy = cls(
            version,
            keyrings,
            admin_threshold,
            approvals,
            builds,
            tuple(repos),
            db_signature_validity_seconds,
            exclude_author,
            tuple((role, tuple(str(c) for c in keyrings[role].certs)) for role in ROLES),
            _repository_keys(repository_keys or {}),
            key_overlap_seconds,
            tuple(witnesses or ()),
            witness_quorum,
        )
        policy.check()
        return policy

    def check(self) -> None:
        """A policy that can never be satisfied, or that trusts nobody, is refused."""
        if self.version < 1:
            raise StatementError("policy version must be at least 1")
        for role, need in (
            ("admins", self.admin_threshold),
            ("maintainers", self.approvals),
            ("builders", self.builds),
        ):
            have = len(set(self.keyrings[role].fingerprints()))
            if need < 1 or need > have:
                raise StatementError(f"threshold {need} for {role} needs 1..{have} (keys listed)")
        if not self.repos or len({r.name for r in self.repos}) != len(self.repos):
            raise StatementError("policy needs at least one repository, each named once")
        for r in self.repos:
            check_name(r.name)
            for a in r.arches:
                check_arch(a)
        if not 1 <= self.db_signature_validity_seconds <= 366 * 86400:
            raise StatementError("database signatures must expire within 366 days")
        if not 0 <= self.key_overlap_seconds <= 366 * 86400:
            raise StatementError("the key overlap must be between 0 and 366 days")
        if self.repository_keys:
            current, nxt, revoked = (set(self.repo_keys(k).fingerprints()) for k in KEY_KINDS)
            if not current:
                raise StatementError("repository keys need at least one current key")
            if revoked & (current | nxt):
                raise StatementError("a repository key cannot be both trusted and revoked")
        self._check_witnesses()

    def _check_witnesses(self) -> None:
        names = [w.name for w in self.witnesses]
        if len(set(names)) != len(names) or len({w.key for w in self.witnesses}) != len(names):
            raise StatementError("each witness is named once, with a key of its own")
        if self.witnesses and not 1 <= self.witness_quorum <= len(self.witnesses):
            raise StatementError(f"a witness quorum needs 1..{len(self.witnesses)} witnesses")
        if not self.witnesses and self.witness_quorum:
            raise StatementError("a witness quorum needs witnesses")
        for w in self.witnesses:
            if not w.url.startswith(("http://", "https://")):
                raise StatementError(f"witness {w.name}: its URL must be http:// or https://")
        try:
            self.witness_policy()
        except ReposealError as exc:
            raise StatementError(f"witnesses: {exc.message}") from None


def _repository_keys(keys: dict[str, list[str]]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Repository keys by kind, each certificate normalised (armored) as the policy keeps it."""
    if set(keys) - set(KEY_KINDS):
        raise StatementError(f"repository key kinds are {', '.join(KEY_KINDS)}")
    out = []
    for kind in KEY_KINDS:
        blob = "\n".join(keys.get(kind, [])).encode()
        certs = tuple(str(c) for c in pysequoia.Cert.split_bytes(blob)) if blob else ()
        if certs:
            out.append((kind, certs))
    return tuple(out)


def parse_policy(raw: bytes) -> Policy:
    doc = load_json(raw, "policy")
    if set(doc) != {"_type", "subject", "predicateType", "predicate"} or (
        doc["_type"] != STATEMENT_TYPE or doc["predicateType"] != PREDICATE_TYPE
    ):
        raise StatementError("not a reposeal policy statement")
    p = doc["predicate"]
    try:
        policy = Policy.build(
            version=int(p["version"]),
            certs={role: list(p[role]) for role in ROLES},
            admin_threshold=int(p["thresholds"]["admins"]),
            approvals=int(p["thresholds"]["approvals"]),
            builds=int(p["thresholds"]["builds"]),
            repos=[
                RepoRule(str(r["name"]), tuple(r["arches"]), tuple(r.get("may_move_to", [])))
                for r in p["repos"]
            ],
            db_signature_validity_seconds=int(p["db_signature_validity_seconds"]),
            exclude_author=bool(p["exclude_author"]),
            repository_keys={k: list(v) for k, v in dict(p.get("repository_keys", {})).items()},
            key_overlap_seconds=int(p.get("key_overlap_seconds", 0)),
            witnesses=[
                WitnessRule(str(w["name"]), str(w["key"]), str(w["url"]))
                for w in p.get("witnesses", {}).get("members", [])
            ],
            witness_quorum=int(p.get("witnesses", {}).get("quorum", 0)),
        )
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise StatementError(f"malformed policy: {exc}") from None
    except ReposealError as exc:
        raise StatementError(f"invalid policy: {exc.message}") from None
    if policy.to_bytes() != raw:
        raise StatementError(
            "policy bytes do not match their canonical form and subject digest "
            "(hand-edited or tampered): re-create it with `reposeal policy init`"
        )
    return policy


def verify_policy(raw: bytes, sig_file: bytes, previous: Policy | None = None) -> Policy:
    """The policy in ``raw`` if its signatures satisfy it (and ``previous``, when rotating)."""
    policy = parse_policy(raw)
    own = valid_signers(raw, sig_file, policy.keyrings["admins"])
    if len(own) < policy.admin_threshold:
        raise VerificationError(
            f"policy v{policy.version} has {len(own)} valid admin signatures, needs "
            f"{policy.admin_threshold}"
        )
    if previous is not None:
        if policy.version <= previous.version:
            raise VerificationError(
                f"policy v{policy.version} does not replace v{previous.version}: "
                "a new policy needs a higher version (rollback refused)"
            )
        old = valid_signers(raw, sig_file, previous.keyrings["admins"])
        if len(old) < previous.admin_threshold:
            raise VerificationError(
                f"policy v{policy.version} has {len(old)} signatures from the admins of "
                f"v{previous.version}, which requires {previous.admin_threshold}"
            )
    return policy
