"""The signer spec carries the key's whole configuration (securesystemslib's signer URIs
do the same): its backend from the registry, and for gpg: the GnuPG home."""

from __future__ import annotations

from pathlib import Path

import pytest

from reposeal.errors import InputError
from reposeal.openpgp.spec import BACKENDS, SignerSpec, signer_from_spec, with_gnupghome

FPR = "0123456789ABCDEF0123456789ABCDEF01234567"


def test_a_gpg_spec_names_its_home_and_round_trips() -> None:
    spec = SignerSpec.parse(f"gpg:{FPR}?homedir=/srv/gnupg%20home")
    assert (spec.backend, spec.target, spec.gnupghome) == ("gpg", FPR, Path("/srv/gnupg home"))
    assert SignerSpec.parse(str(spec)) == spec
    assert SignerSpec.parse("gpg:").target == "" and SignerSpec.parse("gpg:").gnupghome is None


def test_a_home_from_the_command_line_fills_in_only_what_the_spec_lacks() -> None:
    assert with_gnupghome(f"gpg:{FPR}", Path("/a")) == f"gpg:{FPR}?homedir=%2Fa"
    assert with_gnupghome(f"gpg:{FPR}?homedir=/b", Path("/a")).endswith("homedir=%2Fb")
    assert with_gnupghome("soft:/keys/k?x.key", Path("/a")) == "soft:/keys/k?x.key"
    uri = "pkcs11:token=repo;object=k?module-path=/usr/lib/softhsm/libsofthsm2.so"
    assert with_gnupghome(uri, Path("/a")) == uri
    assert with_gnupghome(f"gpg:{FPR}", None) == f"gpg:{FPR}"


@pytest.mark.parametrize(
    "bad",
    [
        "ssh:key",
        "nocolon",
        f"gpg:{FPR}?home=/x",
        f"gpg:{FPR}?homedir=",
        f"gpg:{FPR}?homedir=/a&homedir=/b",
    ],
)
def test_a_malformed_spec_is_an_input_error(bad: str) -> None:
    with pytest.raises(InputError):
        SignerSpec.parse(bad)


def test_every_backend_is_in_the_registry_and_a_soft_key_signs(tmp_path: Path) -> None:
    from reposeal.openpgp.spec import generate

    assert sorted(BACKENDS) == ["gpg", "pkcs11", "soft"]
    fpr = generate(f"soft:{tmp_path / 'k.key'}", "k <k@example.org>", "ed25519")
    assert signer_from_spec(f"soft:{tmp_path / 'k.key'}").fingerprint.upper() == fpr.upper()


def test_the_command_line_spellings_of_a_signer() -> None:
    from reposeal.errors import UsageError
    from reposeal.openpgp.spec import repo_add_spec

    assert repo_add_spec(False, None, "soft:/k") == "soft:/k"
    assert repo_add_spec(True, "ABCD", None) == "gpg:ABCD"
    assert repo_add_spec(True, None, None) == "gpg:", "repo-add --sign: gpg's default key"
    assert repo_add_spec(False, "ABCD", None) is None, "repo-add ignores --key alone"
    assert repo_add_spec(False, None, None) is None
    for sign, key in ((True, None), (False, "ABCD")):
        with pytest.raises(UsageError, match="not both") as err:
            repo_add_spec(sign, key, "soft:/k")
        assert err.value.exit_code == 2
