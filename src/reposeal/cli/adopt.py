"""`reposeal adopt plan`: the adoption statement admins sign to bring an existing repository
under the enclave (then `reposeal enclave adopt`, or `repo adopt` through the bridge)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from reposeal.cli import EXIT_CODES, _Out, main
from reposeal.errors import InputError, ReposealError

ADOPTION_STATEMENT = click.option(
    "--statement",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The adoption statement (`adopt plan`), with STATEMENT.sig by the admins.",
)
ADOPTED_PACKAGES = click.option(
    "--packages",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="The existing repository's folder: the files it names, with their .sig.",
)
PACKAGERS_KEYRING = click.option(
    "--keyring",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The packagers' keyring the statement names (by sha256).",
)


@main.group()
def adopt() -> None:
    """Adopting an existing repository: its packages become the enclave's starting point."""


@adopt.command("plan", epilog=EXIT_CODES)
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--repo", required=True, help="The repository (FOLDER/REPO.db).")
@click.option("--arch", required=True, help="Its architecture.")
@click.option(
    "--keyring",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The packagers' keys (e.g. archlinux-keyring's archlinux.gpg): every file must carry "
    "a packager signature (FILE.sig) that verifies with them; it becomes its %PGPSIG%.",
)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True)
def adopt_plan(
    folder: Path, repo: str, arch: str, keyring: Path | None, output: Path, as_json: bool
) -> None:
    """Write the adoption statement for FOLDER (a repository made by repo-add: REPO.db and
    the package files beside it): every file the database lists, by the sha256 of its bytes.
    Nothing is written if any file is missing, differs from the database, or lacks a valid
    packager signature; each problem is listed. Then: `reposeal policy sign` by the admins."""
    from reposeal.adopt.plan import plan
    from reposeal.evidence.statements import to_bytes
    from reposeal.openpgp.verify import Keyring

    out = _Out(False, as_json)
    try:
        ring = None
        if keyring is not None:
            raw = keyring.read_bytes()
            ring = (Keyring.from_bytes(raw), raw)
        made = plan(folder, repo, arch, ring)
        if made.problems:
            shown = "\n  ".join(made.problems[:50])
            more = f"\n  ... and {len(made.problems) - 50} more" if len(made.problems) > 50 else ""
            raise InputError(f"{len(made.problems)} problems, nothing written:\n  {shown}{more}")
        if output.exists():
            raise InputError("refusing to overwrite an existing file", path=output)
        output.write_bytes(to_bytes(made.statement))
    except ReposealError as exc:
        out.fail(exc)
    except OSError as exc:
        out.fail(InputError(f"{exc.strerror or exc}: {exc.filename}"))
    n = len(made.statement.files)
    if as_json:
        click.echo(json.dumps({"statement": str(output), "files": n}))
        return
    click.echo(f"wrote {output}: {n} files of {repo}/{arch}; now the admins sign it "
               "(reposeal policy sign --signer SPEC " + str(output) + ")")  # fmt: skip
