"""Revoked keys as gpg (and so pacman, through gpgme) sees them: a revocation of any reason,
"soft" ones (superseded, retired) included, makes every signature of that key, or of a
revoked subkey, count for nothing, whenever it was made."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from reposeal.errors import VerificationError
from reposeal.openpgp.verify import Keyring, verify_detached
from tests import tools

pytestmark = pytest.mark.e2e


def gpg(home: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    cmd = ["gpg", "--homedir", str(home), "--batch", "--yes", "--pinentry-mode", "loopback",
           "--passphrase", "", *args]  # fmt: skip
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, check=False)


def revoke(home: Path, fpr: str, reason: str, subkey: bool) -> None:
    """Revoke the primary key (or its first subkey) with a reason code (1: superseded, 3:
    no longer used), as an owner does with `gpg --edit-key`."""
    select = "key 1\n" if subkey else ""
    script = f"{select}revkey\ny\n{reason}\nsoft\n\ny\nsave\n"
    out = gpg(home, "--command-fd", "0", "--status-fd", "2", "--edit-key", fpr, stdin=script)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("reason", ["1", "3"], ids=["superseded", "retired"])
@pytest.mark.parametrize("which", ["primary", "subkey"])
def test_signatures_of_a_softly_revoked_key_are_refused_as_gpg_refuses_them(
    tmp_path: Path, reason: str, which: str
) -> None:
    home = tmp_path / "g"
    home.mkdir(mode=0o700)
    assert gpg(home, "--quick-gen-key", "Soft <soft@example.org>", "ed25519", "cert",
               "never").returncode == 0  # fmt: skip
    listed = gpg(home, "--list-keys", "--with-colons").stdout
    fpr = next(line.split(":")[9] for line in listed.splitlines() if line.startswith("fpr"))
    assert gpg(home, "--quick-add-key", fpr, "ed25519", "sign", "never").returncode == 0
    data = tmp_path / "data"
    data.write_bytes(b"signed before the revocation\n")
    assert gpg(home, "--detach-sign", "-o", str(tmp_path / "data.sig"), str(data)).returncode == 0
    exported = subprocess.run(["gpg", "--homedir", str(home), "--export", fpr],
                              capture_output=True, check=True).stdout  # fmt: skip
    before = Keyring.from_bytes(exported)
    assert verify_detached(data.read_bytes(), (tmp_path / "data.sig").read_bytes(), before)
    revoke(home, fpr, reason, subkey=which == "subkey")
    status = gpg(home, "--status-fd", "1", "--verify", str(tmp_path / "data.sig"), str(data))
    assert "REVKEYSIG" in status.stdout or "KEYREVOKED" in status.stdout, status.stdout
    revoked = subprocess.run(["gpg", "--homedir", str(home), "--export", fpr],
                             capture_output=True, check=True).stdout  # fmt: skip
    with pytest.raises(VerificationError, match="revoked"):
        verify_detached(data.read_bytes(), (tmp_path / "data.sig").read_bytes(),
                        Keyring.from_bytes(revoked))  # fmt: skip
    tools.gpg_kill(home)
