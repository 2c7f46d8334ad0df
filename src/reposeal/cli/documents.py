"""The options every command that signs a document shares: where it goes, which key signs
(a signer spec), and the GnuPG home a gpg: key lives in."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:  # loaded when a command runs: `db add` starts fast
    from reposeal.openpgp.signer import Signer

OUTPUT_OPTION = click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The document to write (its signature goes to OUTPUT.sig).",
)
SIGNER_OPTION = click.option(
    "--signer",
    "spec",
    required=True,
    metavar="SPEC",
    help="soft:PATH, gpg:FPR[?homedir=DIR] or pkcs11:URI",
)
GNUPGHOME_OPTION = click.option(
    "--gnupghome",
    type=click.Path(file_okay=False, path_type=Path),
    help="The GnuPG home of a gpg: key whose spec names none (?homedir=); else gpg's own.",
)


def signer_of(spec: str, gnupghome: Path | None) -> Signer:
    """The signer a spec names (loaded only when a command runs)."""
    from reposeal.openpgp.spec import signer_from_spec

    return signer_from_spec(spec, gnupghome)
