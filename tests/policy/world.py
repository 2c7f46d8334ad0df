"""A small world of real keys (pysequoia) for policy tests: admins, maintainers, builders."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path

import pysequoia

from reposeal.evidence.quorum import Signed, load_signed
from reposeal.evidence.statements import Approval, Build, Override, Removal, Statement, to_bytes
from reposeal.openpgp.soft import SoftSigner
from reposeal.openpgp.verify import Keyring
from reposeal.policy.decide import Evidence, PackageRecord
from reposeal.policy.document import Policy, RepoRule


@dataclass
class Person:
    signer: SoftSigner
    cert: str

    @property
    def fpr(self) -> str:
        return self.signer.fingerprint

    def sign(self, raw: bytes) -> bytes:
        return self.signer.sign_detached(io.BytesIO(raw))


def person(tmp: Path, name: str) -> Person:
    tsk = pysequoia.Tsk.generate(f"{name} <{name}@example.org>", profile=pysequoia.Profile.RFC4880)
    path = tmp / f"{name}.key"
    path.write_text(str(tsk))
    return Person(SoftSigner(path), str(tsk.extract_certificate()))


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


PKGBUILD = sha("PKGBUILD v1")
COMMIT = "a" * 40


@dataclass
class World:
    tmp: Path
    admins: list[Person] = field(default_factory=list)
    maintainers: list[Person] = field(default_factory=list)
    builders: list[Person] = field(default_factory=list)
    outsider: Person | None = None

    def policy(self, version: int = 1, **kw: object) -> Policy:
        args: dict[str, object] = dict(
            version=version,
            certs={
                "admins": [p.cert for p in self.admins],
                "maintainers": [p.cert for p in self.maintainers],
                "builders": [p.cert for p in self.builders],
            },
            admin_threshold=2,
            approvals=2,
            builds=2,
            repos=[RepoRule("core", ("x86_64",)), RepoRule("extra", ("x86_64",))],
        )
        args.update(kw)
        return Policy.build(**args)  # type: ignore[arg-type]

    def signed(self, stmt: Statement, people: list[Person], keyring: Keyring) -> Signed:
        raw = to_bytes(stmt)
        return load_signed(raw, b"".join(p.sign(raw) for p in people), keyring)

    def evidence_for(
        self,
        rec: PackageRecord,
        policy: Policy,
        *,
        approvers: int = 2,
        builders: int = 2,
        commit: str = COMMIT,
        pkgbuild: str = PKGBUILD,
        author: str | None = None,
        repo: str = "core",
    ) -> Evidence:
        approval = Approval(repo, rec.pkgbase, commit, pkgbuild, author)
        build = Build(rec.pkgbase, commit, rec.filename, rec.sha256, sha("buildinfo"))
        return Evidence(
            approvals=[
                self.signed(approval, self.maintainers[:approvers], policy.keyrings["maintainers"])
            ],
            builds=[self.signed(build, self.builders[:builders], policy.keyrings["builders"])],
        )

    def removal(
        self, packages: tuple[tuple[str, str], ...], policy: Policy, n: int = 2, repo: str = "core"
    ) -> Signed:
        return self.signed(
            Removal(repo, packages), self.maintainers[:n], policy.keyrings["maintainers"]
        )

    def override(self, o: Override, policy: Policy, n: int = 2) -> Signed:
        return self.signed(o, self.admins[:n], policy.keyrings["admins"])


def make_world(tmp: Path) -> World:
    w = World(tmp)
    w.admins = [person(tmp, f"admin{i}") for i in range(3)]
    w.maintainers = [person(tmp, f"maint{i}") for i in range(3)]
    w.builders = [person(tmp, f"builder{i}") for i in range(3)]
    w.outsider = person(tmp, "outsider")
    return w


def rec(
    name: str,
    version: str,
    content: str | None = None,
    *,
    pkgbase: str | None = None,
    arch: str = "x86_64",
    pkgbuild: str | None = PKGBUILD,
    filename: str | None = None,
) -> PackageRecord:
    return PackageRecord(
        name=name,
        version=version,
        arch=arch,
        sha256=sha(content or f"{name}-{version}-{arch}"),
        filename=filename or f"{name}-{version}-{arch}.pkg.tar.zst",
        pkgbase=pkgbase or name,
        pkgbuild_sha256=pkgbuild,
    )


def merge(*evidence: Evidence) -> Evidence:
    return Evidence(
        approvals=[a for e in evidence for a in e.approvals],
        builds=[b for e in evidence for b in e.builds],
        removals=[r for e in evidence for r in e.removals],
        overrides=[o for e in evidence for o in e.overrides],
    )
