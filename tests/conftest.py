"""Shared fixtures: real gpg keys, real makepkg builds, a scratch pacman."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from reposeal.client.scratch import ScratchPacman
from reposeal.policy.document import Policy
from tests import tools
from tests.policy.world import World, make_world


@dataclass(frozen=True)
class GpgKey:
    home: Path
    fingerprint: str
    public: Path  # armored public key


def _make_key(home: Path, uid: str) -> GpgKey:
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    fpr = tools.gpg_generate(home, uid)
    pub = home / "public.asc"
    pub.write_bytes(tools.run(["gpg", "--homedir", str(home), "--armor", "--export", fpr]).stdout)
    return GpgKey(home, fpr, pub)


@pytest.fixture(scope="session")
def gpg_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GpgKey]:
    key = _make_key(tmp_path_factory.mktemp("gpg"), "Repo Signer <repo@example.org>")
    yield key
    tools.gpg_kill(key.home)


@pytest.fixture(scope="session")
def stranger_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GpgKey]:
    key = _make_key(tmp_path_factory.mktemp("gpgx"), "Stranger <stranger@example.org>")
    yield key
    tools.gpg_kill(key.home)


@pytest.fixture(scope="session")
def pacman_keyring(tmp_path_factory: pytest.TempPathFactory, gpg_key: GpgKey) -> Iterator[Path]:
    """A pacman keyring (pacman-key) that trusts ``gpg_key`` and nothing else."""
    scratch = ScratchPacman(tmp_path_factory.mktemp("pacman-keyring"), {})
    scratch.trust(gpg_key.public, gpg_key.fingerprint)
    yield scratch.gpgdir
    tools.gpg_kill(scratch.gpgdir)


@dataclass
class Pacman:
    scratch: ScratchPacman
    repo_dir: Path

    @property
    def root(self) -> Path:
        return self.scratch.base

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return tools.run_text(self.scratch.command(*args), check=check)


@pytest.fixture
def pacman(tmp_path: Path, pacman_keyring: Path) -> Iterator[Pacman]:
    """A scratch pacman (own root, db, cache, keyring) reading repo ``demo`` from a folder."""
    repo_dir = tmp_path / "repo"
    repo_dir.mkdir()
    scratch = ScratchPacman(tmp_path / "pacman", {"demo": repo_dir})
    scratch.base.mkdir()
    shutil.copytree(pacman_keyring, scratch.gpgdir, ignore=shutil.ignore_patterns("S.*", "*.lock"))
    scratch.write_conf()
    yield Pacman(scratch, repo_dir)
    tools.gpg_kill(scratch.gpgdir)


@pytest.fixture(scope="session")
def built_packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real packages from the real makepkg (as an unprivileged user, fixed SOURCE_DATE_EPOCH)."""
    out = tmp_path_factory.mktemp("makepkg")
    os.chmod(out, 0o755)
    return tools.makepkg_all(out)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """Maintainers, builders and witnesses with real keys, made once per test module."""
    return make_world(tmp_path_factory.mktemp("world"))


@pytest.fixture(scope="module")
def policy(world: World) -> Policy:
    """The default policy of ``world``, signed by its people."""
    return world.policy()
