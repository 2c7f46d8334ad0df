"""`reposeal backup`: a consistent copy of a machine's state folder, service running."""

from __future__ import annotations

from pathlib import Path

import click

from reposeal.cli import EXIT_CODES, _Out, main
from reposeal.errors import ReposealError


@main.command("backup", epilog=EXIT_CODES)
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.argument("target", type=click.Path(path_type=Path))
@click.option("-q", "--quiet", is_flag=True)
def backup_cmd(folder: Path, target: Path, quiet: bool) -> None:
    """Copy FOLDER (the repo machine's `repo serve --dir`, its mirror, the source machine's
    `source serve --dir` or its PKGBUILD repositories) into the new folder TARGET while the
    service runs: each SQLite database through SQLite's online backup (checked), every other
    file and link as it is. To restore: stop the service, put TARGET back in FOLDER's place,
    start it (see README, "Backups")."""
    from reposeal.backup import backup

    out = _Out(quiet, False)
    try:
        report = backup(folder, target, out.progress)
    except ReposealError as exc:
        out.fail(exc)
    click.echo(
        f"backed up {folder} into {target}: {len(report.databases)} databases, "
        f"{report.files} files, {report.links} links, {report.bytes} bytes"
    )
