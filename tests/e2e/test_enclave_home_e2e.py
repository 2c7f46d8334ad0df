"""The enclave home repairs what it writes without a sync of its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from reposeal.enclave.home import EnclaveHome
from reposeal.openpgp.verify import Keyring, verify_detached
from tests.e2e.test_enclave_e2e import setup  # noqa: F401  (fixture)
from tests.policy.world import World

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("damage", ["missing", "stale", "garbage"])
def test_a_lost_checkpoint_signature_is_made_again(
    setup: tuple[World, Path, Path, Path],  # noqa: F811
    damage: str,
) -> None:
    _, home_path, _, _ = setup
    sig = home_path / "checkpoint.sig"
    if damage == "missing":
        sig.unlink()
    elif damage == "stale":
        sig.write_bytes(sig.read_bytes()[:-10] + bytes(10))
    else:
        sig.write_bytes(b"not a signature")
    home = EnclaveHome(home_path)
    signer = home.signer()
    home.complete_checkpoint(signer)  # what every job does first
    with home.open_log() as log:
        latest = log.latest_checkpoint()
    assert latest is not None
    verify_detached(latest[2], sig.read_bytes(), Keyring.from_bytes(signer.certificate()))
