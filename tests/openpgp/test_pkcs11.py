"""The PKCS#11 signer in-process, against a real SoftHSM2 token: the key is made on the token
and never leaves it, what it signs the real gpg and the strict verifier accept (with the
expiry and notations asked for), and every way of pointing at the wrong token, key or PIN
is a typed error that says what to do."""

from __future__ import annotations

import io
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from reposeal.errors import InputError, SigningError, ToolMissingError, VerificationError
from reposeal.openpgp.pkcs11 import PIN_ENV, Pkcs11Signer, Pkcs11Uri, generate
from reposeal.openpgp.signer import SignOptions
from reposeal.openpgp.verify import Keyring, verify_detached
from tests import tools

SOFTHSM = "/usr/lib/softhsm/libsofthsm2.so"
PIN = "4321"


@pytest.fixture(scope="module")
def token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh SoftHSM2 token labelled ``unit`` with an Ed25519 key ``k``; the folder holds
    the PIN file. The library reads SOFTHSM2_CONF when it is first loaded in this process."""
    base = tmp_path_factory.mktemp("softhsm")
    (base / "tokens").mkdir()
    conf = base / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {base / 'tokens'}\nobjectstore.backend = file\n")
    old = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    tools.run(["softhsm2-util", "--init-token", "--free", "--label", "unit", "--pin", PIN,
               "--so-pin", "123456"])  # fmt: skip
    (base / "pin").write_text(PIN + "\n")
    generate(_uri(base, "k"), "Unit Test <unit@example.org>", "ed25519")
    yield base
    if old is None:
        del os.environ["SOFTHSM2_CONF"]
    else:
        os.environ["SOFTHSM2_CONF"] = old


def _uri(base: Path, key: str, token: str = "unit", pin: str | None = None) -> Pkcs11Uri:
    source = pin if pin is not None else str(base / "pin")
    return Pkcs11Uri.parse(
        f"pkcs11:token={token};object={key}?module-path={SOFTHSM}&pin-source=file:{source}"
    )


def test_a_token_key_signs_what_gpg_and_the_verifier_accept(token: Path, tmp_path: Path) -> None:
    signer = Pkcs11Signer(_uri(token, "k"))
    data = b"a database's bytes\n" * 1000
    options = SignOptions(expires_in=3600, notations=(("log-index@reposeal", "7"),))
    sig = signer.sign_detached(io.BytesIO(data), options)
    keyring = Keyring.from_bytes(signer.certificate())
    assert verify_detached(data, sig, keyring) == signer.fingerprint

    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    (tmp_path / "data").write_bytes(data)
    (tmp_path / "data.sig").write_bytes(sig)
    (tmp_path / "cert").write_bytes(signer.certificate())
    tools.run(["gpg", "--homedir", str(home), "--batch", "--import", str(tmp_path / "cert")])
    got = subprocess.run(
        ["gpg", "--homedir", str(home), "--batch", "--status-fd", "1", "--verify",
         str(tmp_path / "data.sig"), str(tmp_path / "data")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert f"VALIDSIG {signer.fingerprint}" in got.stdout, got.stdout + got.stderr
    assert "NOTATION_NAME log-index@reposeal" in got.stdout
    assert "EXPSIG" not in got.stdout and "BADSIG" not in got.stdout

    with pytest.raises(VerificationError):
        verify_detached(data + b"x", sig, keyring)


def test_the_private_key_cannot_leave_the_token(token: Path) -> None:
    from pkcs11 import Attribute, ObjectClass

    from reposeal.openpgp.pkcs11 import _find, _session

    uri = _uri(token, "k")
    with _session(uri) as session:
        private = _find(session, uri, ObjectClass.PRIVATE_KEY)
        assert private[Attribute.SENSITIVE] is True
        assert private[Attribute.EXTRACTABLE] is False


def test_a_second_key_under_a_taken_label_is_refused(token: Path) -> None:
    with pytest.raises(InputError, match="already holds an object labelled 'k'"):
        generate(_uri(token, "k"), "Other <o@example.org>", "ed25519")
    with pytest.raises(InputError, match="unknown algorithm"):
        generate(_uri(token, "k2"), "Other <o@example.org>", "dsa")


def test_the_wrong_token_key_or_pin_says_what_to_do(token: Path, tmp_path: Path) -> None:
    data = io.BytesIO(b"x")
    with pytest.raises(ToolMissingError, match="token 'nope' not found"):
        Pkcs11Signer(_uri(token, "k", token="nope")).sign_detached(data)
    with pytest.raises(ToolMissingError, match=r"no OpenPGP certificate 'other\.openpgp-cert'"):
        Pkcs11Signer(_uri(token, "other")).sign_detached(data)
    wrong = tmp_path / "wrong-pin"
    wrong.write_text("9999\n")
    with pytest.raises(SigningError, match="wrong PIN"):
        Pkcs11Signer(_uri(token, "k", pin=str(wrong))).sign_detached(data)
    with pytest.raises(ToolMissingError, match="cannot read the PIN"):
        Pkcs11Signer(_uri(token, "k", pin=str(tmp_path / "absent"))).sign_detached(data)


def test_the_pin_comes_from_the_environment_when_the_uri_names_no_file(
    token: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = Pkcs11Uri.parse(f"pkcs11:token=unit;object=k?module-path={SOFTHSM}")
    monkeypatch.delenv(PIN_ENV, raising=False)
    with pytest.raises(ToolMissingError, match=f"set \\${PIN_ENV}"):
        Pkcs11Signer(uri).fingerprint  # noqa: B018
    monkeypatch.setenv(PIN_ENV, PIN)
    assert Pkcs11Signer(uri).fingerprint == Pkcs11Signer(_uri(token, "k")).fingerprint


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("file:x", "not a PKCS#11 URI"),
        (f"pkcs11:object=k?module-path={SOFTHSM}", "token=LABEL is required"),
        ("pkcs11:token=t;object=k", "module-path"),
        (f"pkcs11:token=t?module-path={SOFTHSM}", "object=LABEL or id"),
        (f"pkcs11:token=t;object=k?module-path={SOFTHSM}&pin-value=1234", "pin-value is refused"),
        (f"pkcs11:token=t;token=u;object=k?module-path={SOFTHSM}", "given twice"),
        (f"pkcs11:token=t;colour=red;object=k?module-path={SOFTHSM}", "unknown or malformed"),
        (f"pkcs11:token=t;object?module-path={SOFTHSM}", "unknown or malformed"),
    ],
)
def test_a_malformed_uri_says_which_part(uri: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        Pkcs11Uri.parse(uri)


def test_a_missing_module_is_named(tmp_path: Path) -> None:
    uri = Pkcs11Uri.parse(f"pkcs11:token=t;object=k?module-path={tmp_path / 'none.so'}")
    with pytest.raises(ToolMissingError, match="PKCS#11 module not found"):
        Pkcs11Signer(uri).fingerprint  # noqa: B018
