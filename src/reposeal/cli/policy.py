"""`reposeal policy`: the signed policy admins write, sign, verify and rotate."""

from __future__ import annotations

from pathlib import Path

import click

from reposeal.cli import EXIT_CODES, _Out, main
from reposeal.cli.documents import GNUPGHOME_OPTION, OUTPUT_OPTION, SIGNER_OPTION, signer_of
from reposeal.durations import parse_duration
from reposeal.errors import InputError, ReposealError


def _armored_certs(path: Path) -> list[str]:
    from reposeal.openpgp.verify import Keyring

    return [str(c) for c in Keyring.from_file(path).certs]


@main.group()
def policy() -> None:
    """The signed policy: keyrings per role, thresholds, repositories (TUF-style rotation)."""


@policy.command("init", epilog=EXIT_CODES)
@OUTPUT_OPTION
@click.option("--admins", type=click.Path(exists=True, path_type=Path), required=True)
@click.option("--maintainers", type=click.Path(exists=True, path_type=Path), required=True)
@click.option("--builders", type=click.Path(exists=True, path_type=Path), required=True)
@click.option("--admin-threshold", type=click.IntRange(1), required=True)
@click.option("--approvals", type=click.IntRange(1), required=True)
@click.option("--builds", type=click.IntRange(1), required=True)
@click.option(
    "--repo",
    "repos",
    multiple=True,
    required=True,
    metavar="NAME:ARCH[,ARCH][:UP[,UP]]",
    help="A repository, its architectures and the layers it may move to (testing:x86_64:core).",
)
@click.option("--version", "version", type=click.IntRange(1), default=1, show_default=True)
@click.option(
    "--db-validity",
    default="7d",
    show_default=True,
    metavar="DURATION",
    help="How long database signatures stay valid (pacman refuses them after).",
)
@click.option("--allow-author-approval", is_flag=True, help="Count the author's own approval.")
@click.option(
    "--repository-key",
    "current_keys",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The repository (enclave) key that signs now; goes into the keyring package.",
)
@click.option(
    "--next-repository-key",
    "next_keys",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The key that takes over (trusted alongside during the overlap).",
)
@click.option(
    "--revoked-repository-key",
    "revoked_keys",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A former key pacman must refuse from now on (the keyring's -revoked list).",
)
@click.option(
    "--key-overlap",
    default=None,
    metavar="DURATION",
    help="How long the next repository key must be named (in users' keyrings) before the "
    "enclave may switch to it, e.g. 30d (default: no wait).",
)
@click.option(
    "--witness",
    "witness_specs",
    multiple=True,
    metavar="NAME,VKEY,URL",
    help="A witness that must cosign the log's checkpoints (its `witness keygen` vkey and "
    "tlog-witness URL); with --witness-quorum.",
)
@click.option(
    "--witness-quorum",
    type=click.IntRange(0),
    default=0,
    help="How many of the witnesses must cosign a checkpoint before a database is published "
    "(and clients accept it).",
)
def policy_init(
    output: Path,
    admins: Path,
    maintainers: Path,
    builders: Path,
    admin_threshold: int,
    approvals: int,
    builds: int,
    repos: tuple[str, ...],
    version: int,
    db_validity: str,
    allow_author_approval: bool,
    current_keys: tuple[Path, ...],
    next_keys: tuple[Path, ...],
    revoked_keys: tuple[Path, ...],
    key_overlap: str | None,
    witness_specs: tuple[str, ...],
    witness_quorum: int,
) -> None:
    """Write a new, unsigned policy document (then: `reposeal policy sign`)."""
    from reposeal.policy.document import Policy, RepoRule, WitnessRule

    out = _Out(False, False)
    try:
        rules = []
        for spec in repos:
            name, sep, rest = spec.partition(":")
            arches, _, up = rest.partition(":")
            if not sep or not arches:
                raise InputError(f"--repo {spec!r}: expected NAME:ARCH[,ARCH...][:UP[,UP]]")
            moves = tuple(up.split(",")) if up else ()
            rules.append(RepoRule(name, tuple(arches.split(",")), moves))
        keys = {
            kind: [c for path in paths for c in _armored_certs(path)]
            for kind, paths in (
                ("current", current_keys),
                ("next", next_keys),
                ("revoked", revoked_keys),
            )
            if paths
        }
        doc = Policy.build(
            version=version,
            certs={
                "admins": _armored_certs(admins),
                "maintainers": _armored_certs(maintainers),
                "builders": _armored_certs(builders),
            },
            admin_threshold=admin_threshold,
            approvals=approvals,
            builds=builds,
            repos=rules,
            db_signature_validity_seconds=parse_duration(db_validity),
            exclude_author=not allow_author_approval,
            repository_keys=keys,
            key_overlap_seconds=parse_duration(key_overlap) if key_overlap else 0,
            witnesses=[WitnessRule(*_witness_spec(w)) for w in witness_specs],
            witness_quorum=witness_quorum,
        )
        if output.exists():
            raise InputError("refusing to overwrite an existing file", path=output)
        output.write_bytes(doc.to_bytes())
    except ReposealError as exc:
        out.fail(exc)
    click.echo(f"wrote {output} (version {version}); now have {admin_threshold} admins sign it")


def _witness_spec(spec: str) -> tuple[str, str, str]:
    parts = spec.split(",")
    if len(parts) != 3 or not all(parts):
        raise click.UsageError(f"--witness {spec!r}: give NAME,VKEY,URL")
    return parts[0], parts[1], parts[2]


@policy.command("witnesses", epilog=EXIT_CODES)
@click.argument("document", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def policy_witnesses(document: Path) -> None:
    """Print the policy's witnesses and quorum as a C2SP tlog-policy file: what clients
    (`reposeal verify --witnesses`) need to refuse an unwitnessed log."""
    from reposeal.policy.document import parse_policy

    out = _Out(False, False)
    try:
        click.echo(parse_policy(document.read_bytes()).witness_policy().render(), nl=False)
    except (ReposealError, OSError) as exc:
        out.fail(exc if isinstance(exc, ReposealError) else InputError(str(exc)))


@policy.command("sign", epilog=EXIT_CODES)
@SIGNER_OPTION
@GNUPGHOME_OPTION
@click.argument("document", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def policy_sign(spec: str, gnupghome: Path | None, document: Path) -> None:
    """Add this admin's signature to DOCUMENT.sig (also for statements)."""
    from reposeal.evidence.files import append_signature

    out = _Out(False, False)
    try:
        append_signature(document, signer_of(spec, gnupghome))
    except ReposealError as exc:
        out.fail(exc)


@policy.command("verify", epilog=EXIT_CODES)
@click.option(
    "--previous",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The policy this one replaces (its admins must have signed too).",
)
@click.argument("document", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def policy_verify(document: Path, previous: Path | None) -> None:
    """Exit 0 only if DOCUMENT is a valid policy with enough admin signatures."""
    from reposeal.evidence.files import read_document
    from reposeal.policy.document import verify_policy

    out = _Out(False, False)
    try:
        prev = None
        if previous is not None:
            prev = verify_policy(*read_document(previous))
        p = verify_policy(*read_document(document), previous=prev)
    except ReposealError as exc:
        out.fail(exc)
    click.echo(
        f"policy v{p.version} is valid: {p.admin_threshold} admins, {p.approvals} "
        f"approvals, {p.builds} builds; repos "
        + ", ".join(f"{r.name}:{','.join(r.arches)}" for r in p.repos)
    )
