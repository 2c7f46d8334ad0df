"""`reposeal verify` against a mirror the real repo machine and enclave published: it
accepts the current database and refuses what pacman alone would take: a replayed older
database still within its expiry, a database never logged, a signature never logged, a log
that forked from (or fell behind) what this machine saw, and an expired signature. Then
`reposeal pacman` with the real pacman: the sync happens, the install does not."""

from __future__ import annotations

import io
import json
import shutil
import time
from pathlib import Path

import pytest

from reposeal.client.verify import State, VerifyError, verify
from reposeal.enclave.home import EnclaveHome
from reposeal.openpgp.verify import Keyring
from reposeal.tls import Issued
from reposeal.translog.checkpoint import Checkpoint
from reposeal.translog.store import TransparencyLog
from reposeal.translog.tiles import export
from tests import tools
from tests.e2e.test_repo_cycle_e2e import (  # noqa: F401
    cli,
    cycle,
    enclave,
    pacman_trusting_the_enclave,
    run_enclave,
    send,
)
from tests.e2e.test_repo_intake_e2e import service, world  # noqa: F401
from tests.policy.world import World

pytestmark = pytest.mark.e2e


def publish(tmp_path: Path, world: World, service, enclave: Path, pkg: Path, spec: str) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    send(world, service, pkg, tools.PKGBUILDS[spec], approvers=2)
    for _ in range(2):
        cycle(tmp_path)
        run_enclave(service, enclave)
    assert cycle(tmp_path)[-1]["step"] == "done"


def mirror_copy(src: Path, dst: Path, db: bytes, sig: bytes) -> str:
    """A mirror serving ``db`` and ``sig`` as core, with the log of ``src``."""
    pool = dst / "core" / "os" / "x86_64"
    pool.mkdir(parents=True)
    (pool / "core.db").write_bytes(db)
    (pool / "core.db.sig").write_bytes(sig)
    shutil.copytree(src / "log", dst / "log")
    return f"file://{pool}"


def test_verify_refuses_what_pacman_would_take(
    tmp_path: Path,
    world: World,  # noqa: F811
    service: tuple[str, dict[str, Issued]],  # noqa: F811
    enclave: Path,  # noqa: F811
    built_packages: dict[str, Path],
) -> None:
    mirror = tmp_path / "mirror"
    pool = mirror / "core" / "os" / "x86_64"
    url = f"file://{pool}"
    keyring_file = tmp_path / "trusted.asc"
    keyring_file.write_text(world.admins[2].cert)
    keyring = Keyring.from_file(keyring_file)
    state = State(tmp_path / "state")

    publish(tmp_path, world, service, enclave, built_packages["hello-1.0"], "hello-1.0")
    old_db, old_sig = (pool / "core.db").read_bytes(), (pool / "core.db.sig").read_bytes()
    first = verify(url, "core", keyring, state)
    assert first.repo == "core" and first.arch == "x86_64"
    publish(tmp_path, world, service, enclave, built_packages["world-2.0"], "world-2.0")
    out = cli(
        "verify", "--repo-url", url, "--name", "core", "--keyring", str(keyring_file),
        "--state-dir", str(tmp_path / "state"), "--json",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr + out.stdout
    (now,) = json.loads(out.stdout)
    assert now["ok"] and now["log_index"] > first.log_index

    db, sig = (pool / "core.db").read_bytes(), (pool / "core.db.sig").read_bytes()
    replay = mirror_copy(mirror, tmp_path / "replay", old_db, old_sig)
    with pytest.raises(VerifyError, match="not the latest"):
        verify(replay, "core", keyring, state)
    out = cli(
        "verify", "--repo-url", replay, "--name", "core", "--keyring", str(keyring_file),
        "--state-dir", str(tmp_path / "state"),
    )  # fmt: skip
    assert out.returncode == 5 and "rollback or freeze" in out.stderr, out.stderr

    # a database the repository key signed outside the enclave: valid for pacman, not logged
    forged = db + b"\0" * 512
    forged_sig = world.admins[2].signer.sign_detached(io.BytesIO(forged))
    with pytest.raises(VerifyError, match="not in the transparency log"):
        verify(mirror_copy(mirror, tmp_path / "forged", forged, forged_sig), "core", keyring, state)
    # the current database with a second signature nobody logged
    resigned = world.admins[2].signer.sign_detached(io.BytesIO(db))
    with pytest.raises(VerifyError, match="never logged"):
        verify(mirror_copy(mirror, tmp_path / "resigned", db, resigned), "core", keyring, state)
    # expired: the same mirror, checked 30 days on
    with pytest.raises(VerifyError, match="expired"):
        verify(url, "core", keyring, state, now=time.time() + 30 * 86400)

    # a fork: the same keys sign a log whose last entry differs (split view)
    home = EnclaveHome(enclave)
    with TransparencyLog(enclave / "log.sqlite") as log:
        entries = log.entries(0, log.size)
    fork_dir = tmp_path / "fork"
    fork_dir.mkdir()
    with TransparencyLog(fork_dir / "log.sqlite") as fork:
        fork.append([*entries[:-1], b'{"type":"refusal","reasons":["another view"]}'])
        note = home.note_signer().sign(
            Checkpoint("test.example/log", fork.size, fork.root()).text()
        )
        sig_of_note = home.signer().sign_detached(io.BytesIO(note.encode()))
        forked = mirror_copy(mirror, tmp_path / "forked", db, sig)
        shutil.rmtree(tmp_path / "forked" / "log")
        export(fork, tmp_path / "forked" / "log", note.encode(), fork.size, sig_of_note)
    with pytest.raises(VerifyError, match="split view"):
        verify(forked, "core", keyring, state)
    fresh = State(tmp_path / "another-machine")  # a machine that never saw the real log
    with pytest.raises(VerifyError, match=r"not in the transparency log|not the latest"):
        verify(forked, "core", keyring, fresh)  # the fork dropped the entry of this database
    # a log cut back to fewer entries than seen
    with TransparencyLog(tmp_path / "short.sqlite") as short:
        short.append(entries[: first.log_index + 1])
        note = home.note_signer().sign(
            Checkpoint("test.example/log", short.size, short.root()).text()
        )
        cut = mirror_copy(mirror, tmp_path / "cut", old_db, old_sig)
        shutil.rmtree(tmp_path / "cut" / "log")
        export(short, tmp_path / "cut" / "log", note.encode(), short.size,
               home.signer().sign_detached(io.BytesIO(note.encode())))  # fmt: skip
    with pytest.raises(VerifyError, match="fewer than"):
        verify(cut, "core", keyring, state)

    # `reposeal pacman`: the sync happens, verification fails, nothing is installed
    scratch = pacman_trusting_the_enclave(tmp_path, world, tmp_path / "replay/core/os/x86_64")
    wrapper = cli(
        "pacman", "--keyring", str(keyring_file), "--state-dir", str(tmp_path / "state"),
        "--config", str(scratch.conf), "-Sy", "--noconfirm", "hello",
    )  # fmt: skip
    assert wrapper.returncode == 5 and "not the latest" in wrapper.stderr, wrapper.stderr
    assert tools.run(scratch.command("-Q", "hello"), check=False).returncode != 0
    scratch.repos["core"] = pool  # the real mirror; -Syy: sync even if not newer
    scratch.write_conf()
    wrapper = cli(
        "pacman", "--keyring", str(keyring_file), "--state-dir", str(tmp_path / "state"),
        "--config", str(scratch.conf), "-Syy", "--noconfirm", "world",
    )  # fmt: skip
    assert wrapper.returncode == 0, wrapper.stderr
    assert "world 2.0-1" in tools.run_text(scratch.command("-Q", "world")).stdout
    tools.gpg_kill(scratch.gpgdir)


def test_an_enclave_is_rebuilt_from_its_mirrors(
    tmp_path: Path,
    world: World,  # noqa: F811
    service: tuple[str, dict[str, Issued]],  # noqa: F811
    enclave: Path,  # noqa: F811
    built_packages: dict[str, Path],
) -> None:
    """The mirror carries every entry and every file the entries name: with the key and the
    note key, `enclave restore` rebuilds a home that replays to the same state, audits
    clean, and signs on; a file changed on the mirror stops the restore."""
    publish(tmp_path, world, service, enclave, built_packages["hello-1.0"], "hello-1.0")
    log_dir = tmp_path / "mirror" / "log"
    assert list((log_dir / "records").iterdir()) and list((log_dir / "evidence").iterdir())
    args = ["--signer", f"soft:{tmp_path / 'repo.key'}", "--note-key", str(enclave / "note.key")]
    out = cli("enclave", "restore", "--home", str(tmp_path / "restored"),
              "--from", f"file://{log_dir}", *args)  # fmt: skip
    assert out.returncode == 0, out.stderr
    audit = json.loads(cli("enclave", "audit", "--json", str(tmp_path / "restored")).stdout)
    original = json.loads(cli("enclave", "audit", "--json", str(enclave)).stdout)
    assert audit["ok"] and audit["signatures"] == original["signatures"] == 2, audit
    restored, home = EnclaveHome(tmp_path / "restored"), EnclaveHome(enclave)
    assert restored.load_state() == home.load_state()
    last = restored.last_databases("core", "x86_64")  # its own bytes, to write the next ones
    assert last is not None and restored.read_db(last.db) == home.read_db(last.db)

    # anyone with the repository key can audit the log from the mirror alone
    trusted = tmp_path / "trusted.asc"
    trusted.write_text(world.admins[2].cert)
    copy = cli("enclave", "restore", "--home", str(tmp_path / "auditor"),
               "--from", f"file://{log_dir}", "--keyring", str(trusted))  # fmt: skip
    assert copy.returncode == 0, copy.stderr
    audited = json.loads(cli("enclave", "audit", "--json", str(tmp_path / "auditor")).stdout)
    assert audited["ok"] and audited["signatures"] == 2, audited

    records = sorted((log_dir / "records").iterdir())[0]
    records.write_bytes(records.read_bytes().replace(b"hello", b"hellO"))
    bad = cli("enclave", "restore", "--home", str(tmp_path / "again"),
              "--from", f"file://{log_dir}", *args)  # fmt: skip
    assert bad.returncode != 0 and "does not match its hash" in bad.stderr, bad.stderr


def test_the_rebuild_rehearsal_passes_on_its_own_log_and_alerts_on_another(
    tmp_path: Path,
    world: World,  # noqa: F811
    service: tuple[str, dict[str, Issued]],  # noqa: F811
    enclave: Path,  # noqa: F811
    built_packages: dict[str, Path],
) -> None:
    """`enclave rehearse` rebuilds from the mirror into a scratch folder, audits, and
    compares with the live home: the same log passes; another enclave's live home (a log
    that differs from the mirror's) is an alert."""
    from tests.e2e.test_repo_cycle_e2e import init_enclave

    publish(tmp_path, world, service, enclave, built_packages["hello-1.0"], "hello-1.0")
    trusted = tmp_path / "trusted.asc"
    trusted.write_text(world.admins[2].cert)
    log = f"file://{tmp_path / 'mirror' / 'log'}"
    rehearse = ["enclave", "rehearse", "--from", log, "--keyring", str(trusted), "--scratch",
                str(tmp_path / "scratch")]  # fmt: skip
    same = cli(*rehearse, "--home", str(enclave))
    assert same.returncode == 0 and "rehearsal ok" in same.stderr, same.stderr
    assert not any((tmp_path / "scratch").iterdir()), "the rebuilt copy is removed"

    other = tmp_path / "other"
    other.mkdir()
    for name in ("policy.json", "policy.json.sig"):
        shutil.copy2(tmp_path / name, other / name)
    another = init_enclave(other, world)
    differs = cli(*rehearse, "--home", str(another))
    assert differs.returncode == 5 and "REHEARSAL MISMATCH" in differs.stderr, differs.stderr
    assert "genesis" in differs.stderr and "more than the live one" in differs.stderr
