"""The enclave's jobs in this process (real sandbox, real makepkg packages, real keys), as a
table of attacks: each row is what a compromised repo machine could send instead of an
honest transition, and each must be refused with a reason, change no database the enclave
signed, and leave one refusal in the log (the way python-tuf tests its client against a
simulated repository: one honest world, one change per case)."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from reposeal.enclave.audit import audit
from reposeal.enclave.home import EnclaveHome, init_home
from reposeal.enclave.jobs import dry_run, propose, sign_packages
from reposeal.enclave.proposal import Proposal
from reposeal.enclave.sandbox import WorkerPool
from reposeal.errors import ReposealError, SigningError
from reposeal.evidence.statements import Approval, Build, from_bytes, to_bytes
from tests.e2e.test_enclave_e2e import COMMIT, evidence, write_signed
from tests.policy.world import World


@pytest.fixture(scope="module")
def pool() -> Iterator[WorkerPool]:
    with WorkerPool() as workers:
        yield workers


@dataclass
class Job:
    """One proposed transition: its files, its evidence, the proposal itself."""

    packages: Path
    evidence: Path
    proposal: Proposal
    pkg: Path


@dataclass
class Enclave:
    home: EnclaveHome
    world: World
    pool: WorkerPool
    built: dict[str, Path]
    tmp: Path

    def job(self, which: str, name: str, sign: bool = True, **ev: object) -> Job:
        """A job adding ``which`` (the package signed by the enclave first, on honest
        evidence), with the evidence ``ev`` says (``evidence``'s options)."""
        folder = self.tmp / f"in-{name}"
        folder.mkdir()
        pkg = folder / self.built[which].name
        shutil.copy2(self.built[which], pkg)
        if sign:  # on honest evidence: an attack below is on the transition
            honest = evidence(self.world, self.tmp / f"honest-{name}", pkg, which=which)
            signed = sign_packages(self.home, f"p-{name}", "core", folder, evidence=honest,
                                   pool=self.pool)  # fmt: skip
            assert signed.decision == "accept", signed.reasons
        proof = evidence(self.world, self.tmp / f"ev-{name}", pkg, which=which, **ev)  # type: ignore[arg-type]
        last = self.home.last_databases("core", "x86_64")
        return Job(folder, proof, Proposal("core", "x86_64", (pkg.name,),
                                           parent=last.db if last else None), pkg)  # fmt: skip

    def propose(self, job_id: str, job: Job):  # type: ignore[no-untyped-def]
        return propose(self.home, job_id, job.proposal, job.packages, evidence=job.evidence,
                       pool=self.pool)  # fmt: skip


@pytest.fixture(scope="module")
def published(
    tmp_path_factory: pytest.TempPathFactory,
    world: World,
    built_packages: dict[str, Path],
    pool: WorkerPool,
) -> Path:
    """A home that signed hello 1.0 into core, honestly."""
    tmp = tmp_path_factory.mktemp("enclave")
    doc = tmp / "policy.json"
    write_signed(doc, world.policy().to_bytes(), world.admins[:2])
    key = tmp / "repo.key"
    shutil.copy2(world.admins[2].signer.path, key)
    home = init_home(tmp / "home", f"soft:{key}", doc, "test.example/log")
    enclave = Enclave(home, world, pool, built_packages, tmp)
    result = enclave.propose("first", enclave.job("hello-1.0", "first"))
    assert result.decision == "accept", result.reasons
    return tmp / "home"


@pytest.fixture
def enclave(
    tmp_path: Path,
    published: Path,
    world: World,
    built_packages: dict[str, Path],
    pool: WorkerPool,
) -> Enclave:
    """A copy of the published home, for one case to attack."""
    shutil.copytree(published, tmp_path / "home")
    return Enclave(EnclaveHome(tmp_path / "home"), world, pool, built_packages, tmp_path)


def _statement(folder: Path, prefix: str) -> Path:
    (path,) = folder.glob(f"{prefix}-*.json")
    return path


def one_approval(e: Enclave) -> Job:
    return e.job("hello-1.1", "x", approvers=1)


def one_build(e: Enclave) -> Job:
    return e.job("hello-1.1", "x", builders=1)


def an_outsider_approves(e: Enclave) -> Job:
    job = e.job("hello-1.1", "x", approvers=1)
    path = _statement(job.evidence, "approval")
    write_signed(path, path.read_bytes(), [e.world.maintainers[0], e.world.outsider])
    return job


def the_approval_names_another_pkgbuild(e: Enclave) -> Job:
    job = e.job("hello-1.1", "x")
    path = _statement(job.evidence, "approval")
    other = to_bytes(Approval("core", "hello", COMMIT, "e" * 64))
    write_signed(path, other, e.world.maintainers[:2])
    return job


def the_approval_is_for_another_repository(e: Enclave) -> Job:
    job = e.job("hello-1.1", "x")
    path = _statement(job.evidence, "approval")
    honest = from_bytes(path.read_bytes())
    assert isinstance(honest, Approval)
    elsewhere = to_bytes(dataclasses.replace(honest, repo="extra"))
    write_signed(path, elsewhere, e.world.maintainers[:2])
    return job


def the_builds_attest_other_bytes(e: Enclave) -> Job:
    job = e.job("hello-1.1", "x")
    path = _statement(job.evidence, "build")
    lie = to_bytes(Build("hello", COMMIT, job.pkg.name, "f" * 64, "0" * 64))
    write_signed(path, lie, e.world.builders[:2])
    return job


def the_builds_are_of_another_commit(e: Enclave) -> Job:
    job = e.job("hello-1.1", "x")
    path = _statement(job.evidence, "build")
    honest = from_bytes(path.read_bytes())
    assert isinstance(honest, Build)
    write_signed(path, to_bytes(dataclasses.replace(honest, commit="d" * 40)),
                 e.world.builders[:2])  # fmt: skip
    return job


def the_approval_is_for_another_pkgbase(e: Enclave) -> Job:
    job = e.job("hello-1.1", "x")
    path = _statement(job.evidence, "approval")
    honest = from_bytes(path.read_bytes())
    assert isinstance(honest, Approval)
    write_signed(path, to_bytes(dataclasses.replace(honest, pkgbase="world")),
                 e.world.maintainers[:2])  # fmt: skip
    return job


def the_package_is_not_signed_by_the_enclave(e: Enclave) -> Job:
    return e.job("hello-1.1", "x", sign=False)


def a_stale_parent(e: Enclave) -> Job:
    job = e.job("hello-1.1", "x")
    return dataclasses.replace(job, proposal=dataclasses.replace(job.proposal, parent="0" * 64))


def another_compression(e: Enclave) -> Job:
    job = e.job("hello-1.1", "x")
    return dataclasses.replace(job, proposal=dataclasses.replace(job.proposal, compression=".xz"))


def a_removal_no_maintainer_asked_for(e: Enclave) -> Job:
    job = e.job("hello-1.1", "x")
    p = dataclasses.replace(job.proposal, add=(), remove=("hello",))
    return dataclasses.replace(job, proposal=p)


def truncated_signatures(e: Enclave) -> Job:
    job = e.job("hello-1.1", "x")
    sig = _statement(job.evidence, "approval").with_suffix(".json.sig")
    sig.write_bytes(sig.read_bytes()[: len(sig.read_bytes()) // 2])
    return job


def a_downgrade(e: Enclave) -> Job:
    newer = e.job("hello-1.1", "newer")
    assert e.propose("newer", newer).decision == "accept"
    older = e.tmp / "older"
    older.mkdir()
    pkg = older / e.built["hello-1.0"].name
    shutil.copy2(e.built["hello-1.0"], pkg)
    proof = evidence(e.world, e.tmp / "ev-older", pkg, which="hello-1.0")
    last = e.home.last_databases("core", "x86_64")
    assert last is not None
    return Job(older, proof, Proposal("core", "x86_64", (pkg.name,), parent=last.db), pkg)


ATTACKS: list[tuple[Callable[[Enclave], Job], str]] = [
    (one_approval, "approv"),
    (one_build, "build"),
    (an_outsider_approves, "approv"),
    (the_approval_names_another_pkgbuild, "approv"),
    (the_approval_is_for_another_repository, "approv"),
    (the_builds_attest_other_bytes, "build"),
    (the_builds_are_of_another_commit, "approv"),
    (the_approval_is_for_another_pkgbase, "approv"),
    (the_package_is_not_signed_by_the_enclave, "sign"),
    (a_stale_parent, "stale or forked"),
    (another_compression, "keeps its compression"),
    (a_removal_no_maintainer_asked_for, "remov"),
    (truncated_signatures, "approv"),
    (a_downgrade, "older than"),
]


@pytest.mark.parametrize(("attack", "reason"), ATTACKS, ids=[a.__name__ for a, _ in ATTACKS])
def test_an_attack_is_refused_and_changes_nothing_signed(
    enclave: Enclave, attack: Callable[[Enclave], Job], reason: str
) -> None:
    job = attack(enclave)
    enclave.home.load_state()
    before = enclave.home.last_databases("core", "x86_64")
    with enclave.home.open_log() as log:
        size = log.size
    would = dry_run(enclave.home, job.proposal, job.packages, evidence=job.evidence)
    assert would["decision"] == "refuse", "dry-run says the same, with no key and no log"
    result = enclave.propose("attack", job)
    assert result.decision == "refuse" and result.signature is None
    assert any(reason in r.lower() for r in result.reasons), result.reasons
    assert enclave.home.last_databases("core", "x86_64") == before, "nothing signed changed"
    with enclave.home.open_log() as log:
        assert log.size == size + 1, "one refusal, logged"
        assert enclave.home.entry(log, size).type == "refusal"
    report = audit(enclave.home.path)
    assert report.ok, f"the log still audits clean: {report.violations}"


def test_the_honest_transition_is_signed_and_a_replay_answers_the_same(enclave: Enclave) -> None:
    job = enclave.job("hello-1.1", "honest")
    first = enclave.propose("honest", job)
    assert first.decision == "accept" and first.signature is not None, first.reasons
    again = enclave.propose("honest", job)
    assert (again.log_index, again.signature) == (first.log_index, first.signature)
    other = dataclasses.replace(job.proposal, compression=".xz")
    with pytest.raises(SigningError, match="another request"):
        propose(enclave.home, "honest", other, job.packages, evidence=job.evidence,
                pool=enclave.pool)  # fmt: skip
    report = audit(enclave.home.path)
    assert report.ok and report.signatures >= 3, report.violations


def test_a_hostile_file_name_in_a_proposal_signs_nothing(enclave: Enclave) -> None:
    job = enclave.job("hello-1.1", "names")
    enclave.home.load_state()
    before = enclave.home.last_databases("core", "x86_64")
    for i, name in enumerate(("../escape.pkg.tar.zst", "/etc/passwd", ".hidden.pkg.tar.zst")):
        hostile = dataclasses.replace(job.proposal, add=(name,))
        try:
            result = propose(enclave.home, f"n-{i}", hostile, job.packages,
                             evidence=job.evidence, pool=enclave.pool)  # fmt: skip
        except ReposealError as exc:
            assert exc.message, "a typed error that says why"
        else:
            assert result.decision == "refuse" and result.signature is None, name
    assert enclave.home.last_databases("core", "x86_64") == before


def test_every_committed_checkpoint_has_its_signature_already(enclave: Enclave) -> None:
    """The repository key's signature of each checkpoint is kept under the note's hash
    before the checkpoint is committed: a log push never finds a checkpoint without one
    (it used to wait for checkpoint.sig, written after the commit). The last few are kept."""
    from reposeal.enclave.home import KEPT_CHECKPOINT_SIGNATURES
    from reposeal.enclave.jobs import refresh_db
    from reposeal.openpgp.verify import Keyring, verify_detached

    keyring = Keyring.from_bytes((enclave.home.path / "repo-key.pgp").read_bytes())
    for i in range(KEPT_CHECKPOINT_SIGNATURES + 2):
        done = refresh_db(enclave.home, f"r-{i}", "core", "x86_64")
        assert done.decision == "accept" and done.checkpoint is not None
        verify_detached(done.checkpoint, enclave.home.checkpoint_signature(done.checkpoint) or b"",
                        keyring)  # fmt: skip
    kept = list((enclave.home.path / "checkpoint-sigs").iterdir())
    assert len(kept) == KEPT_CHECKPOINT_SIGNATURES


def test_a_malformed_entry_is_a_violation_for_audit_and_stops_the_enclave(
    enclave: Enclave,
) -> None:
    """A log entry this version does not write (here a refresh naming no repository) is
    reported by `enclave audit` as unreadable, never a crash, and the enclave replaying
    that log signs nothing."""
    from reposeal import canonical
    from reposeal.enclave.home import EnclaveHome
    from reposeal.enclave.home_files import EnclaveStateError
    from reposeal.policy.entries import ENTRY_VERSION

    home = enclave.home
    with home.open_log() as log:
        home.append(log, canonical.dumps({"v": ENTRY_VERSION, "type": "refresh", "job": "x"}),
                    home.key())  # fmt: skip
    report = audit(home.path)
    assert any("unreadable" in v and "lacks repo" in v for v in report.violations), report
    with pytest.raises(EnclaveStateError, match="lacks repo"):
        EnclaveHome(home.path).load_state()
