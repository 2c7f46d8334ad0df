"""Issue 18: the log's checkpoints are cosigned by witnesses (three real `witness serve`
on 127.0.0.1, two of three required) before the repo machine publishes what they cover, and
`reposeal verify --witnesses` refuses, with no state at all, a checkpoint without the
quorum: an unwitnessed log, a fork signed with the log's own (stolen) key, a frozen mirror."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from reposeal.enclave.home import EnclaveHome
from reposeal.policy.document import WitnessRule
from reposeal.repo.witnessing import post_http, request_body
from reposeal.tls import Issued
from reposeal.translog.checkpoint import Checkpoint, split_note
from reposeal.translog.store import TransparencyLog
from reposeal.translog.tiles import export as export_tiles
from tests import tools
from tests.e2e.test_repo_cycle_e2e import cycle, init_enclave, run_enclave, send
from tests.e2e.test_repo_intake_e2e import start_service
from tests.policy.world import World
from tests.tools import WitnessProcess

pytestmark = pytest.mark.e2e
POOL = ("core", "os", "x86_64")


def verify(
    mirror: Path, tmp: Path, *extra: str, later: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`reposeal verify` of MIRROR's core as a first-time client (a fresh state folder)."""
    state = tmp / f"state-{time.monotonic_ns()}"
    return subprocess.run(
        [*(later or []), sys.executable, "-m", "reposeal.cli", "verify", "--repo-url",
         f"file://{mirror.joinpath(*POOL)}", "--name", "core", "--keyring",
         str(tmp / "enclave.asc"), "--state-dir", str(state), "--witnesses",
         str(tmp / "witnesses.policy"), *extra],
        capture_output=True, text=True, check=False,
    )  # fmt: skip


@pytest.fixture
def witnessed(
    tmp_path: Path, world: World
) -> Iterator[tuple[tuple[str, dict[str, Issued]], Path, list[WitnessProcess]]]:
    witnesses = [
        WitnessProcess(tmp_path / "witnesses", f"w{i}.example/witness", []) for i in range(3)
    ]
    rules = [WitnessRule(f"w{i}", w.vkey, w.url) for i, w in enumerate(witnesses)]
    policy = world.policy(witnesses=rules, witness_quorum=2)
    service = start_service(tmp_path, world, policy_doc=policy.to_bytes())
    svc = next(service)
    home = init_enclave(tmp_path, world)
    vkey = EnclaveHome(home).note_signer().verifier.encode()
    for w in witnesses:
        w.logs = [f"test.example/log={vkey}"]
        w.start()
    (tmp_path / "enclave.asc").write_text(world.admins[2].cert)
    (tmp_path / "witnesses.policy").write_text(policy.witness_policy().render())
    try:
        yield svc, home, witnesses
    finally:
        for w in witnesses:
            w.stop()
        service.close()


def publish(tmp_path: Path, svc: tuple[str, dict[str, Issued]], home: Path) -> dict:
    for _ in range(2):
        cycle(tmp_path)
        run_enclave(svc, home)
    (last,) = cycle(tmp_path)
    return last


def test_checkpoints_are_witnessed_before_publication_and_clients_require_it(
    tmp_path: Path,
    world: World,
    witnessed: tuple[tuple[str, dict[str, Issued]], Path, list[WitnessProcess]],
    built_packages: dict[str, Path],
) -> None:
    svc, home, witnesses = witnessed
    mirror = tmp_path / "mirror"
    db = mirror.joinpath(*POOL, "core.db")
    send(world, svc, built_packages["hello-1.0"], tools.PKGBUILDS["hello-1.0"], approvers=2)
    assert publish(tmp_path, svc, home)["step"] == "done"
    note = (mirror / "log" / "checkpoint").read_bytes()
    assert note.count("— w".encode()) == 3, note
    ok = verify(mirror, tmp_path)
    assert ok.returncode == 0, ok.stderr
    # offline: the tlog-proof beside the database, no tiles fetched
    proof = mirror.joinpath(*POOL, "core.db.tlog-proof")
    assert proof.read_bytes().startswith(b"c2sp.org/tlog-proof@v1\nextra ")
    offline = verify(mirror, tmp_path, "--offline")
    assert offline.returncode == 0, offline.stderr
    first = tmp_path / "mirror-v1"
    shutil.copytree(mirror, first, symlinks=True)

    # an unwitnessed checkpoint (the cosignatures dropped) is refused by a first-time client
    bare = tmp_path / "mirror-bare"
    shutil.copytree(mirror, bare, symlinks=True)
    text, _ = split_note(note)
    own = [ln for ln in note.decode().split("\n") if ln.startswith("— test.example")]
    (bare / "log" / "checkpoint").write_text(text + "\n" + own[0] + "\n")
    refused = verify(bare, tmp_path)
    assert refused.returncode == 5 and "lacks the witnesses' quorum" in refused.stderr, (
        refused.stderr
    )

    # two witnesses down: nothing is published; the cycle says which are missing
    witnesses[0].kill()
    witnesses[1].kill()
    send(
        world,
        svc,
        built_packages["hello-1.1"],
        tools.PKGBUILDS["hello-1.1"],
        approvers=2,
        commit="b" * 40,
    )
    waiting = publish(tmp_path, svc, home)
    assert waiting["step"] == "witness", waiting
    assert set(waiting["witnesses_missing"]) == {"w0", "w1"}, waiting
    assert db.read_bytes() == first.joinpath(*POOL, "core.db").read_bytes(), "not published"
    # one back: two of three is the quorum, publication goes on (after its backoff)
    witnesses[1].start()
    deadline = time.monotonic() + 60
    while (done := cycle(tmp_path)) and done[0]["step"] != "done":
        assert time.monotonic() < deadline, done
        time.sleep(0.5)
    assert db.read_bytes() != first.joinpath(*POOL, "core.db").read_bytes()
    assert verify(mirror, tmp_path).returncode == 0

    # the old mirror (old database, old log prefix, old cosignatures) two days on, for a
    # client demanding cosignatures of the last day: a frozen mirror
    later = ["faketime", "-f", "+2d"]
    frozen = verify(first, tmp_path, "--max-checkpoint-age", "1d", later=later)
    assert frozen.returncode == 5 and "frozen" in frozen.stderr, frozen.stderr
    assert verify(mirror, tmp_path, "--max-checkpoint-age", "1d").returncode == 0

    # a restore from the stale mirror would make an enclave sign on from an old state: the
    # witnesses' newest checkpoints are the least it accepts
    def restore(source: Path, into: str) -> subprocess.CompletedProcess[str]:
        key = tmp_path / "repo.key"
        return subprocess.run(
            [sys.executable, "-m", "reposeal.cli", "enclave", "restore", "--home",
             str(tmp_path / into), "--from", f"file://{source / 'log'}", "--signer",
             f"soft:{key}", "--note-key", str(home / "note.key")],
            capture_output=True, text=True, check=False,
        )  # fmt: skip

    stale = restore(first, "restored-stale")
    assert stale.returncode != 0 and "stale" in stale.stderr, stale.stderr
    assert not (tmp_path / "restored-stale").exists(), "nothing usable is left behind"
    current = restore(mirror, "restored")
    assert current.returncode == 0, current.stderr

    # a fork signed with the log's own key and the repository key (as if both were stolen):
    # no witness cosigns it, so no client takes it
    forked = fork(tmp_path, home, world, mirror)
    for w in (witnesses[1], witnesses[2]):
        status, held = post_http(w.url, request_body(0, [], forked))
        assert status == 409, status  # it holds the real log: it says how much
        size = int(held.decode())
        with TransparencyLog(tmp_path / "forged.sqlite") as log:
            proof = log.consistency_proof(size, log.size) if size <= log.size else []
        status, _ = post_http(w.url, request_body(size, proof, forked))
        assert status in (400, 422), status  # and no proof makes a fork consistent with it
    split = verify(tmp_path / "mirror-fork", tmp_path)
    assert split.returncode == 5 and "lacks the witnesses' quorum" in split.stderr, split.stderr


def fork(tmp_path: Path, home: Path, world: World, mirror: Path) -> bytes:
    """A mirror whose log is the real one's first entries plus one forged entry (so the old
    database is the latest again), signed with the enclave's own note and repository keys."""
    import io

    out = tmp_path / "mirror-fork"
    shutil.copytree(tmp_path / "mirror-v1", out, symlinks=True)
    shutil.rmtree(out / "log" / "tile")
    signer = EnclaveHome(home).note_signer()
    with TransparencyLog(home / "log.sqlite") as real:
        entries = real.entries(0, real.size - 1)
    entries.append(json.dumps({"type": "note", "text": "a forged entry"}).encode())
    forged = tmp_path / "forged.sqlite"
    with TransparencyLog(forged) as log:
        log.append(entries)
        note = signer.sign(Checkpoint("test.example/log", log.size, log.root()).text()).encode()
        log.save_checkpoint(log.size, log.root(), note)
        key = world.admins[2].signer
        export_tiles(log, out / "log", note, log.size, key.sign_detached(io.BytesIO(note)))
    return note
