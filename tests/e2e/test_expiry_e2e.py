"""Expiring database signatures: the real pacman syncs before expiry, refuses after (also
its cached copy), and accepts again after `reposeal db refresh`."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pysequoia
import pytest

from reposeal.alpm.synthetic import write_package
from reposeal.client.scratch import ScratchPacman
from reposeal.openpgp.signer import SignOptions
from reposeal.openpgp.soft import SoftSigner
from tests import tools

pytestmark = pytest.mark.e2e


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reposeal.cli", *args], capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize("backend", ["soft", "gpg"])
def test_expired_database_refused_by_pacman_until_refreshed(tmp_path: Path, backend: str) -> None:
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    spec = f"soft:{tmp_path / 'repo.key'}" if backend == "soft" else "gpg:"
    gen = cli("key", "generate", "--signer", spec, "--gnupghome", str(home))
    fpr = gen.stdout.strip()
    spec = spec if backend == "soft" else f"gpg:{fpr}"
    cert = tmp_path / "repo.asc"
    cli("key", "export", "--signer", spec, "--gnupghome", str(home), "-o", str(cert))
    repo = tmp_path / "repo"
    repo.mkdir()
    db = str(repo / "demo.db.tar.gz")
    pkg = write_package(repo, "hello", "1-1")
    signer = ("--signer", spec, "--gnupghome", str(home))
    added = cli("db", "add", *signer, "--sig-expires", "1h", db, str(pkg))
    assert added.returncode == 0, added.stderr

    scratch = ScratchPacman(tmp_path / "pacman", {"demo": repo})
    scratch.base.mkdir()
    scratch.trust(cert, fpr)
    scratch.write_conf()
    tools.run_text(scratch.command("-Sy"))  # fresh: accepted

    # two hours on, for pacman, gpg and reposeal alike: the clock moves, nobody waits
    later = ["faketime", "-f", "+2h"]
    stale = tools.run_text([*later, *scratch.command("-Syy")], check=False)
    assert stale.returncode != 0 and "expired" in (stale.stdout + stale.stderr)
    cached = tools.run_text([*later, *scratch.command("-Ss", "hello")], check=False)
    assert cached.returncode != 0 or "expired" in cached.stderr  # the held copy too
    checked = subprocess.run(
        [*later, sys.executable, "-m", "reposeal.cli", "db", "verify", "--keyring", str(cert), db],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert checked.returncode == 5 and "expired" in checked.stderr

    refreshed = cli("db", "refresh", *signer, "--sig-expires", "1h", db)
    assert refreshed.returncode == 0, refreshed.stderr
    tools.run_text(scratch.command("-Sy"))
    assert "demo hello 1-1" in tools.run_text(scratch.command("-Sl", "demo")).stdout
    for h in (home, scratch.gpgdir):
        tools.gpg_kill(h)


def test_notations_and_expiry_are_in_the_signature(tmp_path: Path) -> None:
    tsk = pysequoia.Tsk.generate("N <n@x>", profile=pysequoia.Profile.RFC4880)
    (tmp_path / "k.key").write_text(str(tsk))
    opts = SignOptions(
        expires_in=3600, notations=(("policy@reposeal.dev", "3"), ("log-index@reposeal.dev", "42"))
    )
    sig = SoftSigner(tmp_path / "k.key").sign_detached(io.BytesIO(b"db"), opts)
    parsed = pysequoia.Sig.from_bytes(sig)
    assert parsed.expiration is not None and parsed.created is not None
    assert int((parsed.expiration - parsed.created).total_seconds()) == 3600
    (tmp_path / "db").write_bytes(b"db")
    (tmp_path / "db.sig").write_bytes(sig)
    (tmp_path / "k.asc").write_text(str(tsk.extract_certificate()))
    home = tmp_path / "g"
    home.mkdir(mode=0o700)
    tools.run(["gpg", "--homedir", str(home), "--batch", "--import", str(tmp_path / "k.asc")])
    out = tools.run(
        [
            "gpg",
            "--homedir",
            str(home),
            "--batch",
            "--verify",
            "--list-options",
            "show-notations",
            "--verify-options",
            "show-notations",
            str(tmp_path / "db.sig"),
            str(tmp_path / "db"),
        ]
    ).stderr.decode()
    assert "policy@reposeal.dev=3" in out and "log-index@reposeal.dev=42" in out
    assert "Signature expires" in out
    tools.gpg_kill(home)
    short = SoftSigner(tmp_path / "k.key").sign_detached(
        io.BytesIO(b"db"), SignOptions(expires_in=60)
    )
    other = pysequoia.Tsk.generate("other <o@example.org>", profile=pysequoia.Profile.RFC4880)
    (tmp_path / "short.sig").write_bytes(short)
    (tmp_path / "other.asc").write_text(str(other.extract_certificate()))
    # an hour on (faketime moves the clock for this process and the gpgv it runs)
    script = f"""
import pytest
from pathlib import Path
from reposeal.errors import VerificationError
from reposeal.openpgp.verify import Keyring, verify_as_made, verify_detached
ring = Keyring.from_bytes(Path({str(tmp_path / "k.asc")!r}).read_bytes())
other = Keyring.from_bytes(Path({str(tmp_path / "other.asc")!r}).read_bytes())
short = Path({str(tmp_path / "short.sig")!r}).read_bytes()
with pytest.raises(VerificationError, match="expired"):
    verify_detached(b"db", short, ring)
# an audit of history: good when made (the real gpgv says EXPSIG), so it counts ...
print(verify_as_made(b"db", short, ring))
# ... but not over other bytes, nor by another key
with pytest.raises(VerificationError, match="BAD"):
    verify_as_made(b"dB", short, ring)
with pytest.raises(VerificationError):
    verify_as_made(b"db", short, other)
"""
    out = subprocess.run(["faketime", "-f", "+1h", sys.executable, "-c", script],
                         capture_output=True, text=True, check=False)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == tsk.extract_certificate().fingerprint.upper()
