"""`reposeal keyring`: the package that makes pacman trust the repository's keys."""

from __future__ import annotations

from pathlib import Path

import click

from reposeal.cli import EXIT_CODES, _Out, main
from reposeal.errors import ReposealError


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
