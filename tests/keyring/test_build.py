"""The keyring package's source, from the signed policy (pure parts): which keys pacman-key
will trust and disable, and the PKGBUILD that installs them."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pysequoia
import pytest

from reposeal.errors import InputError
from reposeal.keyring.build import keyring_files, write_source
from tests.policy.world import World


def fpr(cert: str) -> str:
    return str(pysequoia.Cert.from_bytes(cert.encode()).fingerprint).upper()


def test_current_and_next_keys_are_trusted_and_revoked_ones_disabled(
    tmp_path: Path, world: World
) -> None:
    current, nxt, old = world.admins[0].cert, world.admins[1].cert, world.admins[2].cert
    policy = world.policy(repository_keys={"current": [current], "next": [nxt],
                                           "revoked": [old]})  # fmt: skip
    files = keyring_files("demo", policy)
    assert files["demo-trusted"].decode() == f"{fpr(current)}:4:\n{fpr(nxt)}:4:\n"
    assert files["demo-revoked"].decode() == f"{fpr(old)}\n"
    ring = pysequoia.Cert.split_bytes(files["demo.gpg"])
    assert sorted(str(c.fingerprint).upper() for c in ring) == sorted([fpr(current), fpr(nxt)])
    pkgbuild = write_source(tmp_path / "src", "demo", policy).read_text()
    assert "pkgname=demo-keyring" in pkgbuild and f"pkgver={policy.version}" in pkgbuild
    for name, data in files.items():
        assert hashlib.sha256(data).hexdigest() in pkgbuild, name
        assert (tmp_path / "src" / name).read_bytes() == data
    assert "--populate demo" in (tmp_path / "src" / "demo-keyring.install").read_text()


def test_a_policy_without_a_repository_key_or_a_bad_name_makes_no_keyring(
    tmp_path: Path, world: World
) -> None:
    with pytest.raises(InputError, match="names no repository key"):
        keyring_files("demo", world.policy())
    policy = world.policy(repository_keys={"current": [world.admins[0].cert]})
    for bad in ("../escape", "Demo Keys", ""):
        with pytest.raises(InputError):
            write_source(tmp_path / "out", bad, policy)
    assert not (tmp_path / "out").exists(), "nothing written"
