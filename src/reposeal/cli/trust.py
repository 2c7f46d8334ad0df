"""`reposeal policy` and `reposeal statement`: the evidence admins and maintainers sign."""

from __future__ import annotations

import hashlib
import json
import secrets
import sys
from pathlib import Path

import click

from reposeal.cli import EXIT_CODES, _Out, main
from reposeal.durations import parse_duration
from reposeal.errors import InputError, ReposealError

_OUT = click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The document to write (its signature goes to OUTPUT.sig).",
)
_SIGNER = click.option(
    "--signer", "spec", required=True, metavar="SPEC", help="soft:PATH, gpg:FPR or pkcs11:URI"
)
_GNUPGHOME = click.option("--gnupghome", type=click.Path(file_okay=False, path_type=Path))


def _signer(spec: str, gnupghome: Path | None) -> object:
    from reposeal.openpgp.spec import signer_from_spec

    return signer_from_spec(spec, gnupghome)


def _armored_certs(path: Path) -> list[str]:
    from reposeal.openpgp.verify import Keyring

    return [str(c) for c in Keyring.from_file(path).certs]


@main.group()
def policy() -> None:
    """The signed policy: keyrings per role, thresholds, repositories (TUF-style rotation)."""


@policy.command("init", epilog=EXIT_CODES)
@_OUT
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
@_SIGNER
@_GNUPGHOME
@click.argument("document", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def policy_sign(spec: str, gnupghome: Path | None, document: Path) -> None:
    """Add this admin's signature to DOCUMENT.sig (also for statements)."""
    from reposeal.evidence.files import append_signature

    out = _Out(False, False)
    try:
        append_signature(document, _signer(spec, gnupghome))  # type: ignore[arg-type]
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


@main.group()
def statement() -> None:
    """Signed evidence: approvals, build attestations, removals, overrides."""


def _write(stmt: object, output: Path, spec: str, gnupghome: Path | None) -> None:
    from reposeal.evidence.files import write_signed
    from reposeal.evidence.statements import to_bytes

    out = _Out(False, False)
    try:
        write_signed(output, to_bytes(stmt), _signer(spec, gnupghome))  # type: ignore[arg-type]
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
@_OUT
@_SIGNER
@_GNUPGHOME
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
@_OUT
@_SIGNER
@_GNUPGHOME
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
@_OUT
@_SIGNER
@_GNUPGHOME
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
@_OUT
@_SIGNER
@_GNUPGHOME
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
@_OUT
@_SIGNER
@_GNUPGHOME
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


@main.group()
def keyring() -> None:
    """The keyring package that makes pacman trust the repository's keys."""


@keyring.command("build", epilog=EXIT_CODES)
@click.option("--name", required=True, help="The keyring's name: the package is NAME-keyring.")
@click.option(
    "--policy",
    "policy_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The signed policy whose repository keys (current, next, revoked) it carries.",
)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the PKGBUILD and its files go (commit them to the PKGBUILD repositories).",
)
@click.option("--pkgrel", default=1, show_default=True, type=click.IntRange(1))
@click.option(
    "--package",
    "package_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Also build the package here with makepkg (to try it; publish it through the pipeline).",
)
def keyring_build(
    name: str, policy_path: Path, output: Path, pkgrel: int, package_dir: Path | None
) -> None:
    """Write NAME-keyring's PKGBUILD: /usr/share/pacman/keyrings/NAME.gpg, NAME-trusted and
    NAME-revoked from the policy's repository keys, and an install script that runs
    `pacman-key --populate NAME`. The package version is the policy version."""
    from reposeal.evidence.files import read_document
    from reposeal.keyring.build import build_package, write_source
    from reposeal.policy.document import verify_policy

    out = _Out(False, False)
    try:
        policy = verify_policy(*read_document(policy_path))
        pkgbuild = write_source(output, name, policy, pkgrel)
        click.echo(f"wrote {pkgbuild} ({name}-keyring {policy.version}-{pkgrel})")
        if package_dir is not None:
            click.echo(f"built {build_package(output, package_dir)}")
    except ReposealError as exc:
        out.fail(exc)
