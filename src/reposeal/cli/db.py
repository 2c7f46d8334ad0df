"""`reposeal db`: repo-add and repo-remove, safely."""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
from pathlib import Path
from typing import Any

import click

from reposeal.alpm.syncdb import read_entries
from reposeal.cli import EXIT_CODES, _Out, main
from reposeal.cli.documents import GNUPGHOME_OPTION
from reposeal.durations import parse_duration
from reposeal.errors import InputError, ReposealError
from reposeal.openpgp.signer import NO_OPTIONS, SignOptions
from reposeal.repo import dbupdate
from reposeal.repo.changes import AddRules


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
        click.option(
            "--sig-expires",
            metavar="DURATION",
            help="Make the database signatures expire after DURATION (30s, 12h, 7d, 2w): "
            "pacman then refuses a frozen or replayed copy. Renew with `db refresh`.",
        ),
        click.option("--nocolor", is_flag=True, hidden=True, help="Accepted for repo-add."),
        click.option(
            "--unsigned", is_flag=True, help="Publish a signed repository unsigned (said loudly)."
        ),
        click.option(
            "--new-key",
            is_flag=True,
            help="Sign with another key than the current signature's (users must trust it).",
        ),
    ]

    @functools.wraps(f)
    def command(**params: Any) -> Any:
        # the shared options stay in the click context (``_shared_options`` reads them);
        # the command itself gets how to report
        for name in ("nocolor", *_SHARED):
            params.pop(name)
        return f(_Out(params.pop("quiet"), params.pop("as_json")), **params)

    for opt in reversed(options):
        command = opt(command)
    return command


def _sign_options(sig_expires: str | None) -> SignOptions:
    """``7d`` -> SignOptions(expires_in=604800)."""
    if not sig_expires:
        return NO_OPTIONS
    return SignOptions(expires_in=parse_duration(sig_expires))


def _options(
    out: _Out,
    *,
    sign: bool,
    key: str | None,
    signer: str | None,
    gnupghome: Path | None,
    verify: bool,
    wait: float,
    sig_expires: str | None,
    **more: Any,
) -> dbupdate.UpdateOptions:
    """The options every `db` command shares (signer, verification, lock wait, expiry)."""
    chosen, spec = _signer(sign, key, signer, gnupghome, out)
    return dbupdate.UpdateOptions(
        signer=chosen,
        signer_spec=spec,
        verify_existing=verify,
        gnupghome=gnupghome,
        wait=wait,
        sign_options=_sign_options(sig_expires),
        **more,
    )


_SHARED = ("sign", "key", "signer", "gnupghome", "verify", "wait", "sig_expires", "unsigned",
           "new_key")  # fmt: skip


def _shared_options(out: _Out, **more: Any) -> dbupdate.UpdateOptions:
    """The options every `db` command shares, as the command line gave them."""
    params = click.get_current_context().params
    return _options(out, **{k: params[k] for k in _SHARED}, **more)


def _signer(
    sign: bool, key: str | None, spec: str | None, gnupghome: Path | None, out: _Out
) -> tuple[Any, str | None]:
    """--signer SPEC, or repo-add's spelling --sign [--key FPR] (= gpg:FPR); with the spec
    (the repository remembers it, to sign the same way next time)."""
    from reposeal.openpgp.spec import repo_add_spec, signer_from_spec

    chosen = repo_add_spec(sign, key, spec)
    if key and not sign and not spec:
        out.progress("--key without --sign: the database will not be signed (as repo-add)")
    return (signer_from_spec(chosen, gnupghome), chosen) if chosen else (None, None)


def _report(out: _Out, report: Any) -> None:
    doc = {"ok": True, **dataclasses.asdict(report)}
    if out.as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    if out.quiet:
        return
    for key in ("added", "upgraded", "downgraded", "removed", "refreshed", "rebuilt", "skipped"):
        for item in doc[key]:
            click.echo(f"{key:>10}  {item}", err=True)
    if report.signed_by:
        click.echo(f"    signed  by {report.signed_by}", err=True)
    missing = getattr(report, "files_missing", [])
    if missing:
        click.echo(
            f"warning: {len(missing)} packages still have no files-database entry (their package "
            f"files are not beside the database): {', '.join(missing[:10])}; `pacman -F` will "
            "not know their files until they are added again",
            err=True,
        )


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
    "--replace-same-version",
    is_flag=True,
    help="A personal repository's rebuild (aur build -f): a new file of a version already "
    "listed replaces the old one, loudly (refused without this).",
)
@click.option(
    "--include-sigs", is_flag=True, help="Embed each package's .sig in the database (%PGPSIG%)."
)
@click.option("-j", "--jobs", type=click.IntRange(0), default=0, help="Package readers (0: CPUs).")
@click.argument("database", type=click.Path(path_type=Path))
@click.argument("packages", nargs=-1, type=click.Path(path_type=Path))
def db_add(
    out: _Out,
    database: Path,
    packages: tuple[Path, ...],
    only_new: bool,
    remove_old: bool,
    prevent_downgrade: bool,
    allow_downgrade: bool,
    replace_same_version: bool,
    include_sigs: bool,
    jobs: int,
) -> None:
    """Add packages to DATABASE (NAME.db.tar.gz|zst|xz|bz2), creating it if needed.

    All or nothing: if any package is bad or refused, the database is left untouched.
    Downgrades and a changed file under an existing version are refused.
    """
    try:
        opts = _shared_options(
            out,
            include_sigs=include_sigs,
            remove_old_files=remove_old,
            rules=AddRules(
                only_new=only_new,
                skip_downgrades=prevent_downgrade,
                allow_downgrade=allow_downgrade,
                replace_same_version=replace_same_version,
            ),
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
    out: _Out,
    database: Path,
    names: tuple[str, ...],
) -> None:
    """Remove packages (by name) from DATABASE, like repo-remove. All or nothing."""
    try:
        opts = _shared_options(out)
        _report(out, dbupdate.remove(database, names, opts, out.progress))
    except ReposealError as exc:
        out.fail(exc)


@db.command("rollback", epilog=EXIT_CODES)
@_common
@click.option(
    "--to",
    "target",
    metavar="GENERATION",
    help="The generation to publish again (default: the one before the current one; "
    "`db generations` lists those kept).",
)
@click.option(
    "--allow-downgrade", is_flag=True, help="Needed when it lowers any package's version."
)
@click.argument("database", type=click.Path(path_type=Path))
def db_rollback(
    out: _Out,
    database: Path,
    target: str | None,
    allow_downgrade: bool,
) -> None:
    """Publish an earlier generation of DATABASE again (a bad update undone), as a new
    generation so pacman fetches it. Lowering a version needs --allow-downgrade. Signed
    anew when a signer is given or remembered, else with that generation's own signatures
    (refused if they expired)."""
    try:
        opts = _shared_options(out)
        report = dbupdate.rollback(
            database, opts, out.progress, target, allow_downgrade=allow_downgrade
        )
        _report(out, report)
    except ReposealError as exc:
        out.fail(exc)


@db.command("generations", epilog=EXIT_CODES)
@click.argument("database", type=click.Path(path_type=Path))
def db_generations(database: Path) -> None:
    """List the generations of DATABASE kept on disk (the current one is marked *)."""
    out = _Out(False, False)
    try:
        kept, current = dbupdate.generations(database)
    except ReposealError as exc:
        out.fail(exc)
    for g in kept:
        click.echo(f"{'*' if g == current else ' '} {g}")


@db.command("settings", epilog=EXIT_CODES)
@click.argument("database", type=click.Path(path_type=Path))
@click.option(
    "--replace-same-version",
    type=click.Choice(["on", "off"]),
    help="A personal repository: rebuilds of a listed version replace its file (aurutils' "
    "`aur build -f`), as if every add were given --replace-same-version.",
)
@click.option(
    "--keep-generations",
    type=click.IntRange(2),
    help="How many generations stay on disk for `db rollback` (default 2).",
)
def db_settings(
    database: Path, replace_same_version: str | None, keep_generations: int | None
) -> None:
    """Show or change the settings DATABASE's repository keeps (NAME.reposeal.json): a
    personal repository's same-version rebuilds, and how it is signed (`signing`: the key
    and the signatures' lifetime, kept by every signed update so that add, remove and
    refresh without -s sign the same way; --unsigned or --new-key change it)."""
    from reposeal.repo.dbupdate import save_settings, settings
    from reposeal.repo.paths import RepoPaths

    out = _Out(False, False)
    try:
        paths = RepoPaths.from_db_path(database)
        doc = settings(paths)
        if replace_same_version is not None:
            doc["replace_same_version"] = replace_same_version == "on"
        if keep_generations is not None:
            doc["keep_generations"] = keep_generations
        if replace_same_version is not None or keep_generations is not None:
            save_settings(paths, doc)
    except ReposealError as exc:
        out.fail(exc)
    click.echo(json.dumps(doc, indent=2, sort_keys=True))


@db.command("install-links", epilog=EXIT_CODES)
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
def db_install_links(folder: Path) -> None:
    """Make FOLDER/repo-add and FOLDER/repo-remove run reposeal's (the program name picks
    the command): put FOLDER first in PATH, or point AUR_REPO_ADD-style settings at them."""
    import os
    import shutil

    out = _Out(False, False)
    beside = Path(sys.executable).with_name("reposeal")  # the console script of this install
    target = str(beside) if beside.exists() else shutil.which("reposeal")
    if target is None:
        out.fail(InputError("the `reposeal` program is not installed (pip install reposeal)"))
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("repo-add", "repo-remove"):
            link = folder / name
            if link.exists() and not link.is_symlink():
                raise InputError(f"{link} exists and is not a link: remove it first")
            tmp = folder / f".{name}.tmp"
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(target)
            os.replace(tmp, link)
            click.echo(f"{link} -> {target}")
    except OSError as exc:
        out.fail(InputError(f"cannot write in {folder}: {exc.strerror or exc}"))
    except ReposealError as exc:
        out.fail(exc)


@db.command("refresh", epilog=EXIT_CODES)
@_common
@click.argument("database", type=click.Path(path_type=Path))
def db_refresh(
    out: _Out,
    database: Path,
) -> None:
    """Re-sign DATABASE as it is, with a fresh expiry (run it from cron well before the
    signatures expire). The archives are checked fully before they are signed again."""
    try:
        opts = _shared_options(out)
        _report(out, dbupdate.refresh(database, opts, out.progress))
    except ReposealError as exc:
        out.fail(exc)


@db.command("verify", epilog=EXIT_CODES)
@GNUPGHOME_OPTION
@click.option(
    "--keyring",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Trust exactly these certificates (a file) instead of a gpg keyring.",
)
@click.option("--allow-unsigned", is_flag=True, help="Do not fail on a missing signature.")
@click.option(
    "--no-packages",
    is_flag=True,
    help="Do not check the package files beside the database against their entries.",
)
@click.option("--json", "as_json", is_flag=True)
@click.option("-q", "--quiet", is_flag=True)
@click.argument("database", type=click.Path(path_type=Path))
def db_verify(
    database: Path,
    gnupghome: Path | None,
    keyring: Path | None,
    allow_unsigned: bool,
    no_packages: bool,
    as_json: bool,
    quiet: bool,
) -> None:
    """Check DATABASE: its signatures (with gpg), every entry of the sync and files
    databases, and each listed package file beside it (it must be there and be the file its
    entry describes). Exits 0 only if everything is valid."""
    out = _Out(quiet, as_json)
    try:
        rep = dbupdate.verify(
            database, gnupghome, allow_unsigned, out.progress, keyring, packages=not no_packages
        )
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
