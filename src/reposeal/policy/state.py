"""The signing state: what the enclave has signed so far, nothing but its log replayed.

One typed state for every rule in ``reposeal.policy.decide``; ``restrict`` cuts it down to
what a job's names can touch, so a worker in the sandbox gets a small part of a large
history. Pure, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

RepoArch = tuple[str, str]
Build = tuple[str, str, str]  # (name, version, arch)


@dataclass(frozen=True)
class PackageRecord:
    """One package file as the enclave derived it from the file's own bytes."""

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

    last_db: Mapping[RepoArch, str] = field(default_factory=dict)  # -> sha256 of the database
    highest: Mapping[tuple[str, str], str] = field(default_factory=dict)  # (repo, name) -> ver
    bindings: Mapping[Build, str] = field(default_factory=dict)  # -> sha256 of the one file
    used_overrides: frozenset[str] = frozenset()  # sha256 of override statements
    # every repository a file was ever signed into (its origins): never dropped
    origins: Mapping[Build, frozenset[str]] = field(default_factory=dict)
    # what each signed database holds now: (repo, arch) -> name -> record
    current: Mapping[RepoArch, Mapping[str, PackageRecord]] = field(default_factory=dict)
    used_removals: frozenset[str] = frozenset()  # "statement-sha256:arch:name"
    # approval statements that admitted a version into a repository: (repo, name, version)
    admitted: Mapping[tuple[str, str, str], frozenset[str]] = field(default_factory=dict)
    spent: frozenset[str] = frozenset()  # approvals whose package was removed since
    # the enclave's logged signature of each package file it signed: sha256 -> base64
    signatures: Mapping[str, str] = field(default_factory=dict)

    def holds(self, repo: str, arch: str, name: str) -> PackageRecord | None:
        return self.current.get((repo, arch), {}).get(name)


def restrict(
    state: SigningState, names: Iterable[str], bases: Iterable[str] = (), shas: Iterable[str] = ()
) -> SigningState:
    """What the rules can look up about ``names`` (and every package of ``bases``, for the
    split-package rule, and the signatures of the files ``shas``): their highest versions,
    bindings, origins, current records and admissions, with every last database and used
    statement."""
    wanted = frozenset(names)
    base_set = frozenset(bases)
    sha_set = frozenset(shas)
    current = {
        key: {n: r for n, r in held.items() if n in wanted or r.pkgbase in base_set}
        for key, held in state.current.items()
    }
    return SigningState(
        last_db=state.last_db,
        highest={k: v for k, v in state.highest.items() if k[1] in wanted},
        bindings={k: v for k, v in state.bindings.items() if k[0] in wanted},
        used_overrides=state.used_overrides,
        origins={k: v for k, v in state.origins.items() if k[0] in wanted},
        current={k: v for k, v in current.items() if v},
        used_removals=state.used_removals,
        admitted={k: v for k, v in state.admitted.items() if k[1] in wanted},
        spent=state.spent,
        signatures={k: v for k, v in state.signatures.items() if k in sha_set},
    )


class NameIndex:
    """Which keys of a signing state concern each package name (and each pkgbase), learned
    as log entries are applied: ``restrict`` through it takes time that follows the names
    asked about, not the history of every repository. Kept by whoever replays the log."""

    def __init__(self) -> None:
        self.repos: set[str] = set()
        self.builds: dict[str, set[tuple[str, str]]] = {}  # name -> {(version, arch)}
        self.held: dict[str, set[RepoArch]] = {}  # name -> databases that listed it
        self.bases: dict[str, set[str]] = {}  # pkgbase -> names

    def learn(self, repo: str, arch: str | None, records: Iterable[PackageRecord]) -> None:
        self.repos.add(repo)
        for r in records:
            self.builds.setdefault(r.name, set()).add((r.version, r.arch))
            self.bases.setdefault(r.pkgbase, set()).add(r.name)
            if arch is not None:
                self.held.setdefault(r.name, set()).add((repo, arch))

    def restrict(
        self,
        state: SigningState,
        names: Iterable[str],
        bases: Iterable[str] = (),
        shas: Iterable[str] = (),
    ) -> SigningState:
        """``restrict(state, names, bases, shas)`` for a state this index learned all of."""
        wanted = set(names)
        siblings = {n for b in bases for n in self.bases.get(b, ())}
        keys = [(n, v, a) for n in wanted for v, a in self.builds.get(n, ())]
        current: dict[RepoArch, dict[str, PackageRecord]] = {}
        for name in wanted | siblings:
            for key in self.held.get(name, ()):
                record = state.current.get(key, {}).get(name)
                if record is not None:
                    current.setdefault(key, {})[name] = record
        return SigningState(
            last_db=state.last_db,
            highest={
                (r, n): state.highest[(r, n)]
                for r in self.repos
                for n in wanted
                if (r, n) in state.highest
            },
            bindings={k: state.bindings[k] for k in keys if k in state.bindings},
            used_overrides=state.used_overrides,
            origins={k: state.origins[k] for k in keys if k in state.origins},
            current=current,
            used_removals=state.used_removals,
            admitted={
                (r, n, v): state.admitted[(r, n, v)]
                for (n, v, _) in keys
                for r in self.repos
                if (r, n, v) in state.admitted
            },
            spent=state.spent,
            signatures={s: state.signatures[s] for s in shas if s in state.signatures},
        )
