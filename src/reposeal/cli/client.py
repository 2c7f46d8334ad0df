"""`reposeal verify` and `reposeal pacman`: what users run (or a pacman hook runs) to check
synced databases against the transparency log, beyond what pacman checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click

from reposeal.cli import EXIT_CODES, _Out, main
from reposeal.errors import ReposealError

DEFAULT_STATE = Path("/var/lib/reposeal")

_KEYRING = click.option(
    "--keyring",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The repository key(s) you trust (armored or binary OpenPGP certificates), "
    "obtained out of band or from the keyring package.",
)
_STATE = click.option(
    "--state-dir",
    default=DEFAULT_STATE,
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the last log checkpoint seen is kept (a forked log is caught against it).",
)


_WITNESSES = click.option(
    "--witnesses",
    "witnesses_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The log's witness policy (C2SP tlog-policy, `reposeal policy witnesses`, shipped "
    "with the keyring): refuse a checkpoint without its quorum of fresh cosignatures.",
)
_MAX_AGE = click.option(
    "--max-checkpoint-age",
    "max_age",
    metavar="DURATION",
    help="With --witnesses: the oldest cosignature that counts, e.g. 1d (default: the "
    "database signature's validity).",
)


def _witness_args(path: Path | None, max_age: str | None) -> dict[str, object]:
    from reposeal.durations import parse_duration
    from reposeal.translog.witnesspolicy import parse

    if path is None:
        if max_age is not None:
            raise click.UsageError("--max-checkpoint-age needs --witnesses")
        return {}
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise click.UsageError(f"--witnesses {path}: cannot read it ({exc})") from None
    return {
        "witnesses": parse(text),
        "max_age": float(parse_duration(max_age)) if max_age else None,
    }


def _verify_conf(
    conf_path: Path,
    keyring_path: Path,
    state_dir: Path,
    only: tuple[str, ...] = (),
    witness_args: dict[str, object] | None = None,
) -> list[dict[str, object]]:
    """Verify each repository of a pacman.conf (or those in ``only``) as pacman synced it
    (DBPath/sync), against the log beside its first Server. A repository without a log
    fails: a mirror must not be able to skip the check by hiding the log."""
    from reposeal.client.pacmanconf import PacmanArgs, conf_for, parent_pacman
    from reposeal.client.verify import State, verify
    from reposeal.errors import InputError
    from reposeal.openpgp.verify import Keyring

    if str(conf_path) == "from-pacman":  # a hook: the configuration of the pacman running it
        args = parent_pacman()
        if args is None:
            raise InputError("--pacman-conf from-pacman: this was not started by pacman")
    else:
        args = PacmanArgs(conf_path)
    conf = conf_for(args)
    keyring = Keyring.from_file(keyring_path)
    synced = (conf.dbpath / "sync").resolve()
    out: list[dict[str, object]] = []
    for repo in conf.repos:
        if only and repo.name not in only:
            continue
        log_url = repo.server.rstrip("/").rsplit("/", 3)[0] + "/log"
        found = verify(
            f"file://{synced}", repo.name, keyring, State(state_dir), log_url=log_url,
            arch=conf.arch, **(witness_args or {}),  # type: ignore[arg-type]
        )  # fmt: skip
        out.append(found.to_json())
    return out


@main.command("verify", epilog=EXIT_CODES)
@click.option("--repo-url", help="The repository's pacman Server URL (…/REPO/os/ARCH).")
@click.option("--name", help="The repository name (REPO.db).")
@click.option("--log-url", help="The log (default: log/ at the mirror root).")
@click.option("--arch", help="Only accept a database logged for this architecture.")
@click.option(
    "--pacman-conf",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Instead of --repo-url/--name: every repository of this pacman.conf, as synced "
    "(RootDir, DBPath and Include as pacman reads them). 'from-pacman' (in a hook): the "
    "configuration, --root and --dbpath of the pacman that runs it.",
)
@click.option("--repo", "only", multiple=True, help="With --pacman-conf: only these repositories.")
@_KEYRING
@_STATE
@_WITNESSES
@_MAX_AGE
@click.option(
    "--offline",
    is_flag=True,
    help="With --witnesses and --repo-url: check the database with the tlog-proof beside it "
    "(NAME.db.tlog-proof) instead of fetching the log.",
)
@click.option("--json", "as_json", is_flag=True)
def verify_cmd(
    repo_url: str | None,
    name: str | None,
    log_url: str | None,
    arch: str | None,
    pacman_conf: Path | None,
    only: tuple[str, ...],
    keyring: Path,
    state_dir: Path,
    witnesses_path: Path | None,
    max_age: str | None,
    offline: bool,
    as_json: bool,
) -> None:
    """Check a repository database beyond pacman: its signature and expiry, that it is
    in the transparency log and the latest logged for its repository (no replayed or
    mixed-in old database), that its signature was logged, and that the log extends the
    one this machine saw last (no split view); with --witnesses, that the log's checkpoint
    carries the quorum of fresh witness cosignatures (no split view, frozen mirror or old log
    even on first use). Exit 5 on any failure."""
    from reposeal.client.verify import State, verify
    from reposeal.openpgp.verify import Keyring

    out = _Out(False, as_json)
    extra = _witness_args(witnesses_path, max_age)
    if offline and (not extra or not (repo_url and name)):
        raise click.UsageError("--offline needs --witnesses, --repo-url and --name")
    try:
        if offline:
            from reposeal.client.verify import verify_offline

            assert repo_url and name
            found = verify_offline(
                repo_url, name, Keyring.from_file(keyring), arch=arch or _arch_of(repo_url),
                **extra,  # type: ignore[arg-type]
            )  # fmt: skip
            docs = [found.to_json()]
        elif pacman_conf is not None:
            docs = _verify_conf(pacman_conf, keyring, state_dir, only, extra)
        elif repo_url and name:
            arch = arch or _arch_of(repo_url)
            found = verify(
                repo_url, name, Keyring.from_file(keyring), State(state_dir),
                log_url=log_url, arch=arch, **extra,  # type: ignore[arg-type]
            )  # fmt: skip
            docs = [found.to_json()]
        else:
            raise click.UsageError("give --repo-url and --name, or --pacman-conf")
    except ReposealError as exc:
        out.fail(exc)
    if as_json:
        click.echo(json.dumps(docs, indent=2))
        return
    for d in docs:
        click.echo(
            f"{d['repo']}/{d['arch']}: OK, the latest logged database (log entry "
            f"{d['log_index']} of {d['log_size']})"
        )


def _arch_of(url: str) -> str:
    """The architecture a ``…/REPO/os/ARCH`` Server URL names; without one, --arch is needed
    (a database logged for another architecture must not pass)."""
    from reposeal.alpm.names import check_arch
    from reposeal.errors import ReposealError

    parts = url.rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2] == "os":
        try:
            return check_arch(parts[-1])
        except ReposealError:
            pass
    raise click.UsageError(
        f"--arch is needed: {url!r} does not end in /os/ARCH, so the architecture of the "
        "database to accept is not known"
    )


@main.command(
    "pacman",
    epilog=EXIT_CODES,
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@_KEYRING
@_STATE
@_WITNESSES
@_MAX_AGE
@click.option("--repo", "only", multiple=True, help="Only check these repositories.")
@click.option(
    "--config",
    "conf",
    default=Path("/etc/pacman.conf"),
    show_default=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def pacman_cmd(
    keyring: Path,
    state_dir: Path,
    witnesses_path: Path | None,
    max_age: str | None,
    only: tuple[str, ...],
    conf: Path,
    args: tuple[str, ...],
) -> None:
    """pacman with the log checked between sync and install: `reposeal pacman --keyring K
    -Syu` runs `pacman -Sy`, verifies every synced database (`reposeal verify`), and only
    then runs `pacman -Su`. A database that fails stops it before anything is installed."""
    if not args or not args[0].startswith("-S") or args[0].startswith("--"):
        raise click.UsageError("give pacman sync operations, e.g. -Syu or -Sy PACKAGE")
    base = ["pacman", "--config", str(conf)]
    flags = args[0][1:]
    rest = "S" + flags[1:].replace("y", "")
    syncs = flags.count("y")
    out = _Out(False, False)
    witness_args = _witness_args(witnesses_path, max_age)
    if syncs:
        extra = [a for a in args[1:] if a in ("--noconfirm", "--noprogressbar")]
        done = subprocess.run([*base, "-S" + "y" * syncs, *extra], check=False)
        if done.returncode != 0:
            sys.exit(done.returncode)
    try:
        for d in _verify_conf(conf, keyring, state_dir, only, witness_args):
            click.echo(f"reposeal: {d['repo']}: the latest logged database", err=True)
    except ReposealError as exc:
        out.fail(exc)
    if rest == "S" and len(args) == 1:
        return  # only a sync was asked for
    os.execvp("pacman", [*base, "-" + rest, *args[1:]])  # noqa: S606  (become pacman)
