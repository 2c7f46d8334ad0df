"""`reposeal key`: repository signing keys in files, gpg, or PKCS#11 tokens."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click

from reposeal.cli import EXIT_CODES, _Out, main
from reposeal.cli.documents import GNUPGHOME_OPTION, SIGNER_OPTION
from reposeal.errors import ReposealError


@main.group()
def key() -> None:
    """Repository signing keys: a key file (soft:PATH), gpg and its agent or smartcard
    (gpg:FINGERPRINT), or a PKCS#11 token / HSM (pkcs11:URI, RFC 7512).

    \b
    pkcs11 example (the PIN comes from pin-source= or $REPOSEAL_PKCS11_PIN, never argv):
      pkcs11:token=repo;object=repo-key?module-path=/usr/lib/softhsm/libsofthsm2.so
    """


@key.command("generate", epilog=EXIT_CODES)
@SIGNER_OPTION
@GNUPGHOME_OPTION
@click.option("--uid", default="reposeal repository key <repo@localhost>", show_default=True)
@click.option("--algo", type=click.Choice(["ed25519", "rsa4096"]), default="ed25519")
def key_generate(spec: str, gnupghome: Path | None, uid: str, algo: str) -> None:
    """Create a key and its self-signed OpenPGP certificate; print the fingerprint."""
    from reposeal.openpgp import spec as specs

    out = _Out(False, False)
    try:
        click.echo(specs.generate(spec, uid, algo, gnupghome))
    except ReposealError as exc:
        out.fail(exc)


@key.command("export", epilog=EXIT_CODES)
@SIGNER_OPTION
@GNUPGHOME_OPTION
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path))
def key_export(spec: str, gnupghome: Path | None, output: Path | None) -> None:
    """Print (or write) the armored public certificate, ready for `pacman-key --add`."""
    from reposeal.openpgp import spec as specs

    out = _Out(False, False)
    try:
        armored = str(specs.certificate(spec, gnupghome))
    except ReposealError as exc:
        out.fail(exc)
    if output is None:
        click.echo(armored, nl=False)
    else:
        output.write_text(armored)


@key.command("list", epilog=EXIT_CODES)
@SIGNER_OPTION
@GNUPGHOME_OPTION
@click.option("--json", "as_json", is_flag=True)
def key_list(spec: str, gnupghome: Path | None, as_json: bool) -> None:
    """Show the key a spec names: fingerprint, user IDs, expiry, revocation."""
    from reposeal.openpgp import spec as specs

    out = _Out(False, as_json)
    try:
        info = specs.describe(spec, gnupghome)
    except ReposealError as exc:
        out.fail(exc)
    if as_json:
        click.echo(json.dumps(dataclasses.asdict(info), indent=2))
        return
    click.echo(f"{info.backend}  {info.fingerprint}")
    for uid in info.user_ids:
        click.echo(f"  uid      {uid}")
    click.echo(f"  expires  {info.expires or 'never'}{'  REVOKED' if info.revoked else ''}")
