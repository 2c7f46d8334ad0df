"""`reposeal statement`: the evidence maintainers, builders and admins sign."""

from __future__ import annotations

import hashlib
import json
import secrets
import sys
from pathlib import Path

import click

from reposeal.cli import EXIT_CODES, _Out, main
from reposeal.cli.documents import GNUPGHOME_OPTION, OUTPUT_OPTION, SIGNER_OPTION, signer_of
from reposeal.errors import ReposealError


@main.group()
def statement() -> None:
    """Signed evidence: approvals, build attestations, removals, overrides."""


def _write(stmt: object, output: Path, spec: str, gnupghome: Path | None) -> None:
    from reposeal.evidence.files import write_signed
    from reposeal.evidence.statements import to_bytes

    out = _Out(False, False)
    try:
        write_signed(output, to_bytes(stmt), signer_of(spec, gnupghome))  # type: ignore[arg-type]
    except ReposealError as exc:
        out.fail(exc)
    click.echo(f"wrote {output} and {output.name}.sig")


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


@statement.command("approve", epilog=EXIT_CODES)
@OUTPUT_OPTION
@SIGNER_OPTION
@GNUPGHOME_OPTION
@click.option("--repo", required=True)
@click.option("--pkgbase", required=True)
@click.option("--commit", required=True, help="The git object id of the approved commit.")
@click.option(
    "--pkgbuild",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="That commit's PKGBUILD (its sha256 is approved).",
)
@click.option("--author", help="Fingerprint of the change's author (excluded from the quorum).")
def statement_approve(
    output: Path,
    spec: str,
    gnupghome: Path | None,
    repo: str,
    pkgbase: str,
    commit: str,
    pkgbuild: Path,
    author: str | None,
) -> None:
    """A maintainer approves building COMMIT of PKGBASE for REPO."""
    from reposeal.evidence.statements import Approval

    _write(Approval(repo, pkgbase, commit, _sha256_file(pkgbuild), author), output, spec, gnupghome)


@statement.command("build", epilog=EXIT_CODES)
@OUTPUT_OPTION
@SIGNER_OPTION
@GNUPGHOME_OPTION
@click.option(
    "--package", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True
)
@click.option("--pkgbase", required=True)
@click.option("--commit", required=True)
def statement_build(
    output: Path, spec: str, gnupghome: Path | None, package: Path, pkgbase: str, commit: str
) -> None:
    """A builder attests that COMMIT of PKGBASE built PACKAGE (its sha256)."""
    from reposeal.alpm.package import read_package
    from reposeal.evidence.statements import Build

    out = _Out(False, False)
    try:
        pkg = read_package(package)
    except ReposealError as exc:
        out.fail(exc)
    buildinfo = hashlib.sha256(pkg.buildinfo or b"").hexdigest()
    _write(
        Build(pkgbase, commit, package.name, pkg.facts.sha256, buildinfo), output, spec, gnupghome
    )


@statement.command("withdraw", epilog=EXIT_CODES)
@OUTPUT_OPTION
@SIGNER_OPTION
@GNUPGHOME_OPTION
@click.option("--repo", required=True)
@click.option("--pkgbase", required=True)
@click.option("--commit", required=True, help="The approved commit to withdraw (40 hex).")
def statement_withdraw(
    output: Path, spec: str, gnupghome: Path | None, repo: str, pkgbase: str, commit: str
) -> None:
    """A maintainer withdraws an approved source of REPO before it is published: the repo
    machine drops it (one maintainer suffices: dropping is the safe side)."""
    from reposeal.evidence.statements import Withdrawal

    _write(Withdrawal(repo, pkgbase, commit), output, spec, gnupghome)


@statement.command("remove", epilog=EXIT_CODES)
@OUTPUT_OPTION
@SIGNER_OPTION
@GNUPGHOME_OPTION
@click.option("--repo", required=True)
@click.argument("packages", nargs=-1, required=True, metavar="NAME=VERSION...")
def statement_remove(
    output: Path, spec: str, gnupghome: Path | None, repo: str, packages: tuple[str, ...]
) -> None:
    """Maintainers approve removing exact versions of packages from REPO
    (e.g. ``oldpkg=1.2-1``): the enclave removes only that version, once."""
    from reposeal.evidence.statements import Removal

    pairs = []
    for item in packages:
        name, sep, version = item.partition("=")
        if not sep or not name or not version:
            raise click.UsageError(f"{item!r}: name each package as NAME=VERSION")
        pairs.append((name, version))
    _write(Removal(repo, tuple(pairs)), output, spec, gnupghome)


@statement.command("override", epilog=EXIT_CODES)
@OUTPUT_OPTION
@SIGNER_OPTION
@GNUPGHOME_OPTION
@click.option("--repo", required=True)
@click.option("--pkgname", required=True)
@click.option("--action", type=click.Choice(["downgrade", "rebind"]), required=True)
@click.option("--from", "from_version", required=True)
@click.option("--to", "to_version", required=True)
@click.option(
    "--package",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="The exact file this override lets in.",
)
def statement_override(
    output: Path,
    spec: str,
    gnupghome: Path | None,
    repo: str,
    pkgname: str,
    action: str,
    from_version: str,
    to_version: str,
    package: Path,
) -> None:
    """Admins allow exactly one downgrade (or re-binding of a version), once."""
    from reposeal.evidence.statements import Override

    _write(
        Override(
            repo,
            pkgname,
            action,
            from_version,
            to_version,
            _sha256_file(package),
            secrets.token_hex(16),
        ),
        output,
        spec,
        gnupghome,
    )


@statement.command("verify", epilog=EXIT_CODES)
@click.option(
    "--policy",
    "policy_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
)
@click.option("--json", "as_json", is_flag=True)
@click.argument("document", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def statement_verify(policy_path: Path, as_json: bool, document: Path) -> None:
    """Say what DOCUMENT states, who validly signed it, and for which role it counts."""
    from reposeal.evidence.files import read_document
    from reposeal.evidence.quorum import valid_signers
    from reposeal.evidence.statements import ROLE_OF, from_bytes
    from reposeal.policy.document import verify_policy

    out = _Out(False, as_json)
    try:
        pol = verify_policy(*read_document(policy_path))
        raw, sigs = read_document(document)
        stmt = from_bytes(raw)
        role = ROLE_OF[stmt.kind]
        signers = sorted(valid_signers(raw, sigs, pol.keyrings[role]))
    except ReposealError as exc:
        out.fail(exc)
    need = {"maintainers": pol.approvals, "builders": pol.builds, "admins": pol.admin_threshold}
    doc = {
        "kind": stmt.kind,
        "predicate": stmt.predicate(),
        "role": role,
        "signers": signers,
        "quorum": need[role],
        "meets_quorum": len(signers) >= need[role],
    }
    if as_json:
        click.echo(json.dumps(doc, indent=2))
    else:
        click.echo(
            f"{stmt.kind} statement, counts for {role}: {len(signers)} valid signature(s)"
            f", quorum {need[role]}"
        )
        for s in signers:
            click.echo(f"  signed by {s}")
    sys.exit(0 if signers else 1)
