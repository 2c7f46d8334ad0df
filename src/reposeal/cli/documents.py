"""The options every command that signs a document shares: where it goes, which key signs
(a signer spec), and the GnuPG home a gpg: key lives in."""

from __future__ import annotations

from pathlib import Path

import click

from reposeal.openpgp.signer import Signer

OUTPUT_OPTION = click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The document to write (its signature goes to OUTPUT.sig).",
)
SIGNER_OPTION = click.option(
    "--signer", "spec", required=True, metavar="SPEC", help="soft:PATH, gpg:FPR or pkcs11:URI"
)
GNUPGHOME_OPTION = click.option("--gnupghome", type=click.Path(file_okay=False, path_type=Path))


def signer_of(spec: str, gnupghome: Path | None) -> Signer:
    """The signer a spec names (loaded only when a command runs)."""
    from reposeal.openpgp.spec import signer_from_spec

    return signer_from_spec(spec, gnupghome)
