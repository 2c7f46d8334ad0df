"""`reposeal repo-add` and `reposeal repo-remove`: repo-add 6.x's own command lines, for
aurutils, repoctl and CI scripts that call repo-add (point them at these, or install
`repo-add`/`repo-remove` links with `reposeal db install-links DIR`: the program name picks
the command). Messages as repo-add prints them (`==>` lines, errors on stderr), exit 0
when the database changed and 1 otherwise, as repo-add. Where reposeal is stricter (a
downgrade, a changed file under a published version, a signed repository updated without
-s) the refusal says which option or step lifts it.

Exit codes as repo-add 6's: 0 when no package failed (an update that changes nothing
included: reposeal then leaves the database as it is instead of writing it again), 1 when one
did (then nothing is written), and for usage errors. ``-v DB`` alone only verifies.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from reposeal.cli import main
from reposeal.errors import ReposealError

if TYPE_CHECKING:
    from reposeal.repo.dbupdate import Report, UpdateOptions

WAIT_FOREVER = 365 * 86400.0
F = TypeVar("F", bound=Callable[..., Any])


def _say(quiet: bool) -> Callable[[str], None]:
    def progress(message: str) -> None:
        if not quiet:
            click.echo(f"==> {message}")

    return progress


def _fail(exc: ReposealError) -> NoReturn:
    click.echo(f"==> ERROR: {exc}", err=True)
    click.echo("==> No packages modified, nothing to do.")
    sys.exit(1)


def _options(
    sign: bool,
    key: str | None,
    verify: bool,
    wait_for_lock: bool,
    unsigned: bool,
    new_key: bool,
    **more: Any,
) -> UpdateOptions:
    """What repo-add's common options mean for an update (signer parsed as `db` does)."""
    from reposeal.cli import _Out
    from reposeal.cli.db import _signer
    from reposeal.repo.dbupdate import UpdateOptions

    signer, spec = _signer(sign, key, None, None, _Out(False, False))
    return UpdateOptions(
        signer=signer,
        signer_spec=spec,
        verify_existing=verify,
        wait=WAIT_FOREVER if wait_for_lock else 0.0,
        unsigned=unsigned,
        new_key=new_key,
        **more,
    )


_OPTIONS = [
    click.option("-q", "--quiet", is_flag=True, help="minimize output"),
    click.option("-s", "--sign", is_flag=True, help="sign database with GnuPG after update"),
    click.option("-k", "--key", metavar="<key>", help="use the specified key to sign the database"),
    click.option("-v", "--verify", is_flag=True, help="verify database's signature before update"),
    click.option("--nocolor", is_flag=True, help="turn off color in output"),
    click.option("--wait-for-lock", is_flag=True, help="wait for the lock instead of failing"),
    click.option("--unsigned", is_flag=True, help="(reposeal) publish a signed database unsigned"),
    click.option("--new-key", is_flag=True, help="(reposeal) sign with another key than before"),
]


def _common(f: F) -> F:
    for opt in reversed(_OPTIONS):
        f = opt(f)
    return f


@main.command("repo-add", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-n", "--new", "only_new", is_flag=True,
              help="only add packages that are not already in the database")  # fmt: skip
@click.option("-R", "--remove", "remove_old", is_flag=True,
              help="remove old package file from disk after updating database")  # fmt: skip
@click.option(
    "-p",
    "--prevent-downgrade",
    is_flag=True,
    help="do not add package to database if a newer version is already present",
)
@click.option("--include-sigs", is_flag=True, help="include package signatures in the database")
@click.option(
    "--replace-same-version",
    is_flag=True,
    help="(reposeal) let a rebuild of a listed version replace its file, loudly",
)
@_common
@click.argument("database", metavar="<path-to-db>", type=click.Path(path_type=Path))
@click.argument("packages", metavar="<package> ...", nargs=-1, type=click.Path(path_type=Path))
def repo_add(
    database: Path,
    packages: tuple[Path, ...],
    only_new: bool,
    remove_old: bool,
    prevent_downgrade: bool,
    include_sigs: bool,
    replace_same_version: bool,
    quiet: bool,
    sign: bool,
    key: str | None,
    verify: bool,
    nocolor: bool,
    wait_for_lock: bool,
    unsigned: bool,
    new_key: bool,
) -> None:
    """repo-add will update a package database by reading a package file. Multiple packages
    to add can be specified on the command line (repo-add 6.x's options; the database is
    written atomically, every package read strictly, a downgrade refused)."""
    from reposeal.repo import dbupdate
    from reposeal.repo.changes import AddRules

    _verify_only(database, verify, bool(packages))
    try:
        opts = _options(
            sign, key, verify, wait_for_lock, unsigned, new_key,
            include_sigs=include_sigs,
            remove_old_files=remove_old,
            rules=AddRules(
                only_new=only_new,
                skip_downgrades=prevent_downgrade,
                replace_same_version=replace_same_version,
            ),
        )  # fmt: skip
        for p in packages:
            if not quiet:
                click.echo(f"==> Adding package '{p}'")
        report = dbupdate.add(database, packages, opts, _say(quiet))
        for line in report.rebuilt:
            click.echo(f"==> WARNING: {line}", err=True)
    except ReposealError as exc:
        _fail(exc)
    _finish(report, database, quiet)


@main.command("repo-remove", context_settings={"help_option_names": ["-h", "--help"]})
@_common
@click.argument("database", metavar="<path-to-db>", type=click.Path(path_type=Path))
@click.argument("names", metavar="<packagename> ...", nargs=-1)
def repo_remove(
    database: Path,
    names: tuple[str, ...],
    quiet: bool,
    sign: bool,
    key: str | None,
    verify: bool,
    nocolor: bool,
    wait_for_lock: bool,
    unsigned: bool,
    new_key: bool,
) -> None:
    """repo-remove will update a package database by removing the package name specified
    on the command line from the given repo database (repo-remove 6.x's options)."""
    from reposeal.repo import dbupdate

    _verify_only(database, verify, bool(names))
    try:
        opts = _options(sign, key, verify, wait_for_lock, unsigned, new_key)
        for n in names:
            if not quiet:
                click.echo(f"==> Searching for package '{n}'...")
        report = dbupdate.remove(database, names, opts, _say(quiet))
    except ReposealError as exc:
        _fail(exc)
    _finish(report, database, quiet)


def _verify_only(database: Path, verify: bool, given: bool) -> None:
    """repo-add -v DB with nothing to add: check the signatures and stop (exit 0 or 1);
    no database argument but nothing else either: usage, exit 1."""
    if given:
        return
    if not verify:
        click.echo(click.get_current_context().get_usage(), err=True)
        sys.exit(1)
    from reposeal.openpgp.gpg import gpg_verify
    from reposeal.repo.paths import RepoPaths

    try:
        paths = RepoPaths.from_db_path(database)
        for part in ("db", "files"):
            archive = paths.archive(part)
            sig = archive.with_name(archive.name + ".sig")
            if not archive.exists():
                continue
            click.echo("==> Verifying database signature...")
            if not sig.exists():
                click.echo("==> WARNING: No existing signature found, skipping verification.")
                continue
            gpg_verify(archive, sig)
            click.echo("  -> Database signature file verified.")
    except ReposealError as exc:
        _fail(exc)
    sys.exit(0)


def _finish(report: Report, database: Path, quiet: bool) -> None:
    """repo-add's ending: exit 0 when no package failed (failures raised before this)."""
    if report.generation:
        if not quiet:
            click.echo(f"==> Creating updated database file '{database}'")
    elif not quiet:
        click.echo("==> Nothing changed: the database is left as it is.")
    sys.exit(0)
