"""Backups of the repo machine: its state folder and its mirror copied while `repo serve`
runs (`reposeal backup`), the machine lost, the copies put back: it carries on, the next
approved package is signed, published and installed by the real pacman."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests import tools
from tests.e2e.test_repo_cycle_e2e import (
    COMMIT,
    cli,
    cycle,
    init_enclave,
    pacman_trusting_the_enclave,
    run_enclave,
    send,
)
from tests.e2e.test_repo_intake_e2e import start_service, world  # noqa: F401
from tests.policy.world import World

pytestmark = pytest.mark.e2e


def publish(tmp_path: Path, svc: tuple, home: Path) -> None:
    for _ in range(2):  # sign the packages, then the databases
        cycle(tmp_path)
        assert "served 1 job" in run_enclave(svc, home)
    assert cycle(tmp_path)[0]["step"] == "done"


def test_the_repo_machine_restored_from_a_backup_carries_on(
    tmp_path: Path,
    world: World,  # noqa: F811
    built_packages: dict[str, Path],
) -> None:
    running = start_service(tmp_path, world)
    svc = next(running)
    home = init_enclave(tmp_path, world)
    send(world, svc, built_packages["hello-1.0"], tools.PKGBUILDS["hello-1.0"], approvers=2)
    publish(tmp_path, svc, home)

    backups = tmp_path / "backups"
    for name in ("srv", "mirror"):  # while the service runs
        made = cli("backup", str(tmp_path / name), str(backups / name))
        assert made.returncode == 0, made.stderr
    assert "databases" in made.stdout
    refused = cli("backup", str(tmp_path / "srv"), str(backups / "srv"))
    assert refused.returncode == 1 and "exists already" in refused.stderr

    running.close()  # the machine is lost ...
    for name in ("srv", "mirror"):
        shutil.rmtree(tmp_path / name)
        shutil.copytree(backups / name, tmp_path / name, symlinks=True)  # ... and restored

    again = start_service(tmp_path, world)
    svc = next(again)
    try:
        later = "e" * 40
        assert later != COMMIT
        send(world, svc, built_packages["hello-1.1"], tools.PKGBUILDS["hello-1.1"],
             approvers=2, commit=later)  # fmt: skip
        publish(tmp_path, svc, home)
    finally:
        again.close()
    pool = tmp_path / "mirror" / "core" / "os" / "x86_64"
    scratch = pacman_trusting_the_enclave(tmp_path, world, pool)
    tools.run_text(scratch.command("-Sy"))
    tools.run_text(scratch.command("-S", "--noconfirm", "hello"))
    assert "hello 1.1-1" in tools.run_text(scratch.command("-Q", "hello")).stdout
    tools.gpg_kill(scratch.gpgdir)
