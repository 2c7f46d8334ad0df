"""Every signing backend, end to end: pacman syncs what it signed; gpg and sq verify it.

The PKCS#11 backend runs against a real SoftHSM2 token created here; the private key never
leaves it.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pysequoia
import pytest

from reposeal.alpm.synthetic import write_package
from reposeal.client.scratch import ScratchPacman
from reposeal.errors import InvalidSignatureFileError, SigningError, VerificationError
from reposeal.openpgp.soft import SoftSigner
from reposeal.openpgp.verify import Keyring, verify_detached
from tests import tools

pytestmark = pytest.mark.e2e
SOFTHSM = "/usr/lib/softhsm/libsofthsm2.so"
PIN = "4321"


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reposeal.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(scope="module")
def hsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A real SoftHSM2 token; yields the environment that points at it."""
    base = tmp_path_factory.mktemp("softhsm")
    (base / "tokens").mkdir()
    conf = base / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {base / 'tokens'}\nobjectstore.backend = file\n")
    env = {"SOFTHSM2_CONF": str(conf), "REPOSEAL_PKCS11_PIN": PIN}
    tools.run(
        [
            "softhsm2-util",
            "--init-token",
            "--free",
            "--label",
            "repo",
            "--pin",
            PIN,
            "--so-pin",
            "123456",
        ],
        env={**os.environ, **env},
    )
    yield env


def pkcs11_spec(label: str) -> str:
    return f"pkcs11:token=repo;object={label}?module-path={SOFTHSM}"


BACKENDS = ["soft", "soft-rsa4096", "gpg", "pkcs11-ed25519", "pkcs11-rsa4096"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_backend_signs_databases_pacman_gpg_and_sq_accept(
    tmp_path: Path, hsm: dict[str, str], backend: str
) -> None:
    gnupghome = tmp_path / "gnupg"
    gnupghome.mkdir(mode=0o700)
    algo = "rsa4096" if backend.endswith("rsa4096") else "ed25519"
    spec = {
        "soft": f"soft:{tmp_path / 'repo.key'}",
        "soft-rsa4096": f"soft:{tmp_path / 'repo.key'}",
        "gpg": "gpg:",
        "pkcs11-ed25519": pkcs11_spec(f"ed-{tmp_path.name}"),
        "pkcs11-rsa4096": pkcs11_spec(f"rsa-{tmp_path.name}"),
    }[backend]
    env = {**hsm, "GNUPGHOME": str(gnupghome)}
    gen = cli("key", "generate", "--signer", spec, "--algo", algo, "--uid", "Repo <r@x>", env=env)
    assert gen.returncode == 0, gen.stderr
    fpr = gen.stdout.strip()
    if backend == "gpg":
        spec = f"gpg:{fpr}"
    cert = tmp_path / "repo-key.asc"
    assert cli("key", "export", "--signer", spec, "-o", str(cert), env=env).returncode == 0
    listed = cli("key", "list", "--json", "--signer", spec, env=env)
    assert fpr in listed.stdout

    repo = tmp_path / "repo"
    repo.mkdir()
    pkg = write_package(repo, "hello", "1.0-1")
    added = cli("db", "add", "--signer", spec, str(repo / "demo.db.tar.gz"), str(pkg), env=env)
    assert added.returncode == 0, added.stderr

    scratch = ScratchPacman(tmp_path / "pacman", {"demo": repo})
    scratch.base.mkdir()
    scratch.trust(cert, fpr)
    scratch.write_conf("Required DatabaseRequired")
    tools.run_text(scratch.command("-Sy"))
    assert "demo hello 1.0-1" in tools.run_text(scratch.command("-Sl", "demo")).stdout

    verifier_home = tmp_path / "verify-gnupg"
    verifier_home.mkdir(mode=0o700)
    tools.run(["gpg", "--homedir", str(verifier_home), "--batch", "--import", str(cert)])
    for name in ("demo.db.tar.gz", "demo.files.tar.gz"):
        target = str(repo / name)
        tools.run(
            ["gpg", "--homedir", str(verifier_home), "--batch", "--verify", target + ".sig", target]
        )
        tools.run(
            ["sq", "verify", "--signer-cert", str(cert), "--detached", target + ".sig", target]
        )
    checked = cli("db", "verify", "--keyring", str(cert), str(repo / "demo.db.tar.gz"))
    assert checked.returncode == 0, checked.stderr
    for home in (gnupghome, verifier_home, scratch.gpgdir):
        tools.gpg_kill(home)


def test_wrong_pin_and_missing_token(tmp_path: Path, hsm: dict[str, str]) -> None:
    spec = pkcs11_spec("pin-test")
    assert cli("key", "generate", "--signer", spec, env=hsm).returncode == 0
    db = str(tmp_path / "r.db.tar.gz")
    wrong = cli("db", "add", "--signer", spec, db, env={**hsm, "REPOSEAL_PKCS11_PIN": "0000"})
    assert wrong.returncode == 5 and "wrong PIN" in wrong.stderr
    missing = cli("db", "add", "--signer", spec.replace("token=repo", "token=nope"), db, env=hsm)
    assert missing.returncode == 6 and "not found" in missing.stderr
    no_pin = cli(
        "db",
        "add",
        "--signer",
        spec,
        db,
        env={"SOFTHSM2_CONF": hsm["SOFTHSM2_CONF"], "REPOSEAL_PKCS11_PIN": ""},
    )
    assert no_pin.returncode == 6 and "PIN" in no_pin.stderr
    inline = cli("db", "add", "--signer", spec + "&pin-value=4321", db, env=hsm)
    assert inline.returncode == 1 and "pin-value is refused" in inline.stderr
    assert not (tmp_path / "r.db.tar.gz").exists()


def test_expired_and_revoked_keys(tmp_path: Path) -> None:
    expiring = pysequoia.Tsk.generate(
        "E <e@x>",
        profile=pysequoia.Profile.RFC4880,
        validity_seconds=64,  # Sequoia backdates creation by ~60 s
    )
    path = tmp_path / "expiring.key"
    path.write_text(str(expiring))
    signer = SoftSigner(path)
    sig = signer.sign_detached(io.BytesIO(b"data"))
    keyring = Keyring((expiring.extract_certificate(),))
    assert verify_detached(b"data", sig, keyring) == signer.fingerprint
    expiry = expiring.extract_certificate().expiration
    assert expiry is not None
    time.sleep(max(0.0, expiry.timestamp() - time.time()) + 0.5)
    with pytest.raises(SigningError, match="expired"):
        SoftSigner(path).sign_detached(io.BytesIO(b"data"))
    with pytest.raises(VerificationError, match="expired"):
        verify_detached(b"data", sig, keyring)

    key = pysequoia.Tsk.generate("R <r@x>", profile=pysequoia.Profile.RFC4880)
    good = SoftSigner(tmp_path / "r.key")
    (tmp_path / "r.key").write_text(str(key))
    sig = good.sign_detached(io.BytesIO(b"data"))
    cert = key.extract_certificate()
    revocation = cert.revoke(key.certifier())
    revoked = pysequoia.Cert.from_bytes(bytes(cert) + bytes(revocation))
    with pytest.raises(VerificationError, match="revoked"):
        verify_detached(b"data", sig, Keyring((revoked,)))
    (tmp_path / "rv.key").write_bytes(bytes(key) + bytes(revocation))
    with pytest.raises(SigningError, match="revoked"):
        SoftSigner(tmp_path / "rv.key").sign_detached(io.BytesIO(b"data"))


def test_signature_outside_keyring_tampered_data_and_garbage(tmp_path: Path) -> None:
    a = pysequoia.Tsk.generate("A <a@x>", profile=pysequoia.Profile.RFC4880)
    b = pysequoia.Tsk.generate("B <b@x>", profile=pysequoia.Profile.RFC4880)
    (tmp_path / "a.key").write_text(str(a))
    sig = SoftSigner(tmp_path / "a.key").sign_detached(io.BytesIO(b"data"))
    with pytest.raises(VerificationError, match="not in the keyring"):
        verify_detached(b"data", sig, Keyring((b.extract_certificate(),)))
    with pytest.raises(VerificationError, match="BAD signature"):
        verify_detached(b"dat4", sig, Keyring((a.extract_certificate(),)))
    with pytest.raises(InvalidSignatureFileError):
        verify_detached(b"data", b"\x89garbage", Keyring((a.extract_certificate(),)))


def test_pin_from_pin_source_file(tmp_path: Path, hsm: dict[str, str]) -> None:
    pin_file = tmp_path / "pin"
    pin_file.write_text(PIN + "\n")
    spec = pkcs11_spec("pin-file") + f"&pin-source=file:{pin_file}"
    env = {"SOFTHSM2_CONF": hsm["SOFTHSM2_CONF"], "REPOSEAL_PKCS11_PIN": ""}
    assert cli("key", "generate", "--signer", spec, env=env).returncode == 0
    out = cli("db", "add", "--signer", spec, str(tmp_path / "r.db.tar.gz"), env=env)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "r.db.tar.gz.sig").exists()


def test_password_protected_soft_key_streams_a_file(tmp_path: Path) -> None:
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    tools.run(
        [
            "gpg",
            "--homedir",
            str(home),
            "--batch",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "s3cret",
            "--quick-gen-key",
            "P <p@x>",
            "ed25519",
            "sign",
            "0",
        ]
    )
    secret = tools.run(
        [
            "gpg",
            "--homedir",
            str(home),
            "--batch",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "s3cret",
            "--export-secret-keys",
        ]
    ).stdout
    tools.gpg_kill(home)
    (tmp_path / "p.key").write_bytes(secret)
    signer = SoftSigner(tmp_path / "p.key", password="s3cret")
    data = tmp_path / "data.bin"
    data.write_bytes(os.urandom(3 << 20))
    with open(data, "rb") as f:
        sig = signer.sign_detached(f)
    cert = pysequoia.Cert.from_bytes(signer.certificate())
    assert verify_detached(data, sig, Keyring((cert,))) == signer.fingerprint
    with pytest.raises(SigningError):
        SoftSigner(tmp_path / "p.key", password="wrong").sign_detached(io.BytesIO(b"x"))


def test_a_gpg_keys_home_travels_inside_its_spec(tmp_path: Path) -> None:
    """`--gnupghome` at `enclave init` goes into the spec the home keeps (gpg:FPR?homedir=),
    so every later command finds the key with no option and no GNUPGHOME; `db add` takes
    the same spec directly."""
    import json

    from tests.e2e.test_enclave_e2e import write_signed
    from tests.policy.world import make_world

    (tmp_path / "keys").mkdir()
    world = make_world(tmp_path / "keys")
    gnupghome = tmp_path / "gnupg"
    gnupghome.mkdir(mode=0o700)
    env = {"GNUPGHOME": str(tmp_path / "elsewhere")}  # not where the key is
    made = cli("key", "generate", "--signer", "gpg:", "--gnupghome", str(gnupghome), env=env)
    assert made.returncode == 0, made.stderr
    fpr = made.stdout.strip()
    doc = tmp_path / "policy.json"
    write_signed(doc, world.policy().to_bytes(), world.admins[:2])
    home = tmp_path / "enclave"
    init = cli("enclave", "init", "--home", str(home), "--signer", f"gpg:{fpr}",
               "--gnupghome", str(gnupghome), "--policy", str(doc), "--origin", "t.example/log",
               env=env)  # fmt: skip
    assert init.returncode == 0, init.stderr
    kept = json.loads((home / "config.json").read_text())["signer"]
    assert kept.startswith(f"gpg:{fpr}?homedir=") and str(gnupghome).split("/")[-1] in kept
    status = cli("enclave", "status", "--home", str(home), "--json", env=env)
    assert status.returncode == 0 and fpr in status.stdout, status.stderr
    repo = tmp_path / "repo"
    repo.mkdir()
    pkg = write_package(repo, "hello", "1.0-1")
    added = cli("db", "add", "--signer", kept, str(repo / "t.db.tar.gz"), str(pkg), env=env)
    assert added.returncode == 0, added.stderr
    # the repository remembers the whole spec: a plain update signs in the same home
    removed = cli("db", "remove", str(repo / "t.db.tar.gz"), "hello", env=env)
    assert removed.returncode == 0, removed.stderr
    assert f"signing with gpg:{fpr}?homedir=" in removed.stdout + removed.stderr
    tools.gpg_kill(gnupghome)
