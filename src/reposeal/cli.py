"""``reposeal`` command line: argument parsing and output only; the work lives elsewhere."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from reposeal import __version__
from reposeal.alpm.syncdb import read_entries
from reposeal.alpm.vercmp import vercmp as _vercmp
from reposeal.errors import InputError, RefusedError, ReposealError
from reposeal.repo import dbupdate
from reposeal.repo.changes import AddRules

EXIT_CODES = """\b
Exit codes:
  0  success
  1  bad input (malformed or hostile package, database or signature)
  2  usage error
  3  refused: downgrade, same version with other content, unknown package;
     nothing was written
  4  the database is locked by another writer
  5  signing or signature verification failed
  6  a required tool or key is missing
"""


class UsageError(InputError):
    """Options that contradict each other."""


class _Out:
    """Progress to stderr (unless quiet), results to stdout (JSON with --json)."""

    def __init__(self, quiet: bool, as_json: bool) -> None:
        self.quiet = quiet
        self.as_json = as_json

    def progress(self, msg: str) -> None:
        if not self.quiet and not self.as_json:
            click.echo(f"==> {msg}", err=True)

    def fail(self, exc: ReposealError) -> NoReturn:
        if self.as_json:
            doc: dict[str, Any] = {"ok": False, "error": str(exc), "kind": type(exc).__name__}
            if isinstance(exc, RefusedError):
                doc["reasons"] = exc.reasons
            click.echo(json.dumps(doc, indent=2))
        else:
            click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)


@click.group(epilog=EXIT_CODES)
@click.version_option(__version__, prog_name="reposeal")
def main() -> None:
    """Sign pacman repositories so that no single person, machine, replay or downgrade can
    put a package in front of users.

    Start with `reposeal db add`: repo-add's job with the same options, refusing downgrades,
    never leaving a half-written database, and much faster.
    """


@main.group()
def db() -> None:
    """Create, update and check pacman sync/files databases (repo-add, repo-remove)."""


def _common(f: Any) -> Any:
    options = [
        click.option("-q", "--quiet", is_flag=True, help="Only print errors."),
        click.option("--json", "as_json", is_flag=True, help="Print a JSON report on stdout."),
        click.option("-s", "--sign", is_flag=True, help="Sign the databases with gpg."),
        click.option("-k", "--key", metavar="KEY", help="The gpg key to sign with (with --sign)."),
        click.option(
            "--signer",
            metavar="SPEC",
            help="Sign with soft:KEYFILE, gpg:FINGERPRINT or pkcs11:URI (see `reposeal key`).",
        ),
        click.option(
            "-v", "--verify", is_flag=True, help="Verify the current signature before updating."
        ),
        click.option(
            "--gnupghome",
            type=click.Path(file_okay=False, path_type=Path),
            help="gpg home for signing and verification (default: $GNUPGHOME or ~/.gnupg).",
        ),
        click.option(
            "--wait",
            type=click.FloatRange(0),
            default=0.0,
            metavar="SECONDS",
            help="Wait this long for another writer's lock instead of failing at once.",
        ),
        click.option("--nocolor", is_flag=True, hidden=True, help="Accepted for repo-add."),
    ]
    for opt in reversed(options):
        f = opt(f)
    return f


def _signer(
    sign: bool, key: str | None, spec: str | None, gnupghome: Path | None, out: _Out
) -> Any:
    """--signer SPEC, or repo-add's spelling --sign [--key FPR] (= gpg:FPR)."""
    from reposeal.openpgp.spec import signer_from_spec

    if spec:
        if sign or key:
            raise UsageError("use either --signer or --sign/--key, not both")
        return signer_from_spec(spec, gnupghome)
    if key and not sign:
        out.progress("--key without --sign: the database will not be signed (as repo-add)")
    if not sign:
        return None
    return signer_from_spec(f"gpg:{key or ''}", gnupghome)


def _report(out: _Out, report: Any) -> None:
    doc = {"ok": True, **dataclasses.asdict(report)}
    if out.as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    if out.quiet:
        return
    for key in ("added", "upgraded", "downgraded", "removed", "refreshed", "skipped"):
        for item in doc[key]:
            click.echo(f"{key:>10}  {item}", err=True)
    if report.signed_by:
        click.echo(f"    signed  by {report.signed_by}", err=True)


@db.command("add", epilog=EXIT_CODES)
@_common
@click.option(
    "-n", "--new", "only_new", is_flag=True, help="Only add packages not already present."
)
@click.option(
    "-R", "--remove", "remove_old", is_flag=True, help="Delete replaced package files afterwards."
)
@click.option(
    "-p",
    "--prevent-downgrade",
    is_flag=True,
    help="Skip (rather than refuse) packages older than the database's.",
)
@click.option("--allow-downgrade", is_flag=True, help="Accept packages older than the database's.")
@click.option(
    "--include-sigs", is_flag=True, help="Embed each package's .sig in the database (%PGPSIG%)."
)
@click.option("-j", "--jobs", type=click.IntRange(0), default=0, help="Package readers (0: CPUs).")
@click.argument("database", type=click.Path(path_type=Path))
@click.argument("packages", nargs=-1, type=click.Path(path_type=Path))
def db_add(
    database: Path,
    packages: tuple[Path, ...],
    quiet: bool,
    as_json: bool,
    sign: bool,
    key: str | None,
    signer: str | None,
    verify: bool,
    gnupghome: Path | None,
    wait: float,
    nocolor: bool,
    only_new: bool,
    remove_old: bool,
    prevent_downgrade: bool,
    allow_downgrade: bool,
    include_sigs: bool,
    jobs: int,
) -> None:
    """Add packages to DATABASE (NAME.db.tar.gz|zst|xz|bz2), creating it if needed.

    All or nothing: if any package is bad or refused, the database is left untouched.
    Downgrades and a changed file under an existing version are refused.
    """
    out = _Out(quiet, as_json)
    try:
        opts = dbupdate.UpdateOptions(
            signer=_signer(sign, key, signer, gnupghome, out),
            verify_existing=verify,
            gnupghome=gnupghome,
            include_sigs=include_sigs,
            remove_old_files=remove_old,
            rules=AddRules(
                only_new=only_new,
                skip_downgrades=prevent_downgrade,
                allow_downgrade=allow_downgrade,
            ),
            wait=wait,
            jobs=jobs,
        )
        _report(out, dbupdate.add(database, packages, opts, out.progress))
    except ReposealError as exc:
        out.fail(exc)


@db.command("remove", epilog=EXIT_CODES)
@_common
@click.argument("database", type=click.Path(path_type=Path))
@click.argument("names", nargs=-1, required=True)
def db_remove(
    database: Path,
    names: tuple[str, ...],
    quiet: bool,
    as_json: bool,
    sign: bool,
    key: str | None,
    signer: str | None,
    verify: bool,
    gnupghome: Path | None,
    wait: float,
    nocolor: bool,
) -> None:
    """Remove packages (by name) from DATABASE, like repo-remove. All or nothing."""
    out = _Out(quiet, as_json)
    try:
        opts = dbupdate.UpdateOptions(
            signer=_signer(sign, key, signer, gnupghome, out),
            verify_existing=verify,
            gnupghome=gnupghome,
            wait=wait,
        )
        _report(out, dbupdate.remove(database, names, opts, out.progress))
    except ReposealError as exc:
        out.fail(exc)


@db.command("verify", epilog=EXIT_CODES)
@click.option("--gnupghome", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--keyring",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Trust exactly these certificates (a file) instead of a gpg keyring.",
)
@click.option("--allow-unsigned", is_flag=True, help="Do not fail on a missing signature.")
@click.option("--json", "as_json", is_flag=True)
@click.option("-q", "--quiet", is_flag=True)
@click.argument("database", type=click.Path(path_type=Path))
def db_verify(
    database: Path,
    gnupghome: Path | None,
    keyring: Path | None,
    allow_unsigned: bool,
    as_json: bool,
    quiet: bool,
) -> None:
    """Check DATABASE: its signatures (with gpg) and every entry of the sync and files
    databases. Exits 0 only if everything is valid."""
    out = _Out(quiet, as_json)
    try:
        rep = dbupdate.verify(database, gnupghome, allow_unsigned, out.progress, keyring)
    except ReposealError as exc:
        out.fail(exc)
    if as_json:
        click.echo(json.dumps({"ok": rep.ok, **dataclasses.asdict(rep)}, indent=2))
    elif not quiet:
        for archive, signer in rep.signatures.items():
            click.echo(
                f"{archive}: {'unsigned' if signer == 'unsigned' else 'signed by ' + signer}"
            )
        for p in rep.problems:
            click.echo(f"problem: {p}", err=True)
        click.echo(f"{rep.packages} packages, {'valid' if rep.ok else 'INVALID'}")
    sys.exit(0 if rep.ok else 1)


@db.command("diff")
@click.option("--json", "as_json", is_flag=True)
@click.argument("old", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("new", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def db_diff(old: Path, new: Path, as_json: bool) -> None:
    """Show what changed between two sync databases (added, upgraded, downgraded, ...)."""
    from reposeal.alpm.diff import PackageState, diff

    out = _Out(False, as_json)
    try:
        states = [
            {n: PackageState(e.version, e.sha256) for n, e in read_entries(p, None).items()}
            for p in (old, new)
        ]
    except ReposealError as exc:
        out.fail(exc)
    summary = diff(states[0], states[1]).summary()
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    for key, items in summary.items():
        if key != "unchanged":
            for item in items:
                click.echo(f"{key:>16}  {item}")
    click.echo(f"{len(summary['unchanged']):>16}  unchanged")


@main.group()
def key() -> None:
    """Repository signing keys: a key file (soft:PATH), gpg and its agent or smartcard
    (gpg:FINGERPRINT), or a PKCS#11 token / HSM (pkcs11:URI, RFC 7512).

    \b
    pkcs11 example (the PIN comes from pin-source= or $REPOSEAL_PKCS11_PIN, never argv):
      pkcs11:token=repo;object=repo-key?module-path=/usr/lib/softhsm/libsofthsm2.so
    """


_SIGNER_ARG = click.option(
    "--signer", "spec", required=True, metavar="SPEC", help="soft:PATH, gpg:FPR or pkcs11:URI"
)
_GNUPGHOME = click.option("--gnupghome", type=click.Path(file_okay=False, path_type=Path))


@key.command("generate", epilog=EXIT_CODES)
@_SIGNER_ARG
@_GNUPGHOME
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
@_SIGNER_ARG
@_GNUPGHOME
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
@_SIGNER_ARG
@_GNUPGHOME
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


@main.command("vercmp")
@click.argument("a")
@click.argument("b")
def vercmp_cmd(a: str, b: str) -> None:
    """Compare two versions as pacman does; print -1, 0 or 1."""
    click.echo(str(_vercmp(a, b)))


if __name__ == "__main__":
    main()
