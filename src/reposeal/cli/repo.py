"""`reposeal repo`: the repo machine's service (the enclave's bridge and the intake)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from reposeal.cli import EXIT_CODES, _Out, main, options
from reposeal.cli.adopt import ADOPTED_PACKAGES, ADOPTION_STATEMENT, PACKAGERS_KEYRING
from reposeal.cli.bridge import (
    HOSTCHECK_DIR,
    PUBLIC_LISTEN,
    ClientTls,
    _client,
    _tls,
    add_public_site,
    client_ca_option,
    serve_https,
)
from reposeal.cli.config import service_options
from reposeal.durations import parse_duration
from reposeal.errors import InputError, ReposealError

F = TypeVar("F", bound=Callable[..., Any])

_POLICY = click.option(
    "--policy",
    "policy_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The policy (with POLICY.sig) whose keys uploads and evidence are checked against.",
)


_REFRESH = click.option(
    "--refresh-before",
    default="3d",
    show_default=True,
    help="Have the enclave re-sign a published database this long before its signature "
    "expires (the policy sets how long signatures hold).",
)


_REWITNESS = click.option(
    "--rewitness",
    default="1h",
    show_default=True,
    help="With witnesses in the policy: renew their cosignatures on the log's checkpoint "
    "this often, so clients can demand fresh ones (keep it well under their max age).",
)


_machine_options = options(  # what `repo cycle/move/remove` work on
    click.option(
        "--dir", "folder", required=True, type=click.Path(file_okay=False, path_type=Path)
    ),
    click.option(
        "--mirror",
        required=True,
        type=click.Path(file_okay=False, path_type=Path),
        help="The published tree: MIRROR/REPO/os/ARCH/REPO.db ...",
    ),
    _POLICY,
)


@main.group()
def repo() -> None:
    """The repo machine: takes builds and approvals, serves the enclave's jobs."""


@repo.command("serve", epilog=EXIT_CODES)
@service_options("repo")
@click.option("--dir", "folder", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--listen", default="127.0.0.1:8443", show_default=True)
@click.option("--cert", required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--key", required=True, type=click.Path(exists=True, path_type=Path))
@client_ca_option
@_POLICY
@click.option(
    "--mirror",
    type=click.Path(file_okay=False, path_type=Path),
    help="Run the update cycle and publish here (MIRROR/REPO/os/ARCH/).",
)
@_REFRESH
@_REWITNESS
@PUBLIC_LISTEN
@HOSTCHECK_DIR
def repo_serve(
    folder: Path,
    listen: str,
    cert: Path,
    key: Path,
    client_ca: Path,
    policy_path: Path,
    mirror: Path | None,
    refresh_before: str,
    rewitness: str,
    public_listen: str | None,
    hostcheck_dir: Path | None,
) -> None:
    """Serve builders (POST /builds), the source machine (POST /statements), status, and
    the enclave's job queue, over HTTPS with mutual TLS; with --mirror, also run the update
    cycle (after every upload and enclave answer) and publish. With --public-listen, the
    status page (/), the same as JSON (/status.json) and /metrics over plain HTTP."""
    from reposeal.repo.service import PUBLIC, PolicyFile, make_service

    out = _Out(False, False)
    try:
        before = parse_duration(refresh_before)
        app = make_service(
            folder,
            PolicyFile(policy_path),
            mirror,
            before,
            float(parse_duration(rewitness)),
            hostcheck_dir=hostcheck_dir,
        )
    except ReposealError as exc:
        out.fail(exc)
    if public_listen:
        add_public_site(app, app[PUBLIC], public_listen, "repo")
    serve_https(app, listen, cert, key, client_ca, component="repo")


@repo.command("status", epilog=EXIT_CODES)
@_tls
@click.option("--json", "as_json", is_flag=True)
def repo_status(url: str, tls: ClientTls, as_json: bool) -> None:
    """What is ready to stage, and what waits for which evidence."""
    out = _Out(False, as_json)
    try:
        doc = _client(tls, url).status()
    except ReposealError as exc:
        out.fail(exc)
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    for a in doc.get("alerts", []):
        hours = a["seconds_left"] / 3600
        click.echo(
            f"ALERT    {a['repo']}/{a['arch']}: the database signature expires in "
            f"{hours:.1f} h and has not been refreshed",
            err=True,
        )
    click.echo(f"{doc['packages']} packages received; statements: {doc['statements']}")
    for p in doc.get("published", []):
        days = p["seconds_left"] / 86400
        click.echo(
            f"published {p['repo']}/{p['arch']}: {p['db_sha256'][:16]}…, signature holds "
            f"{days:.1f} more days"
        )
    for w in doc["ready"]:
        click.echo(f"ready    {w['repo']}/{w['pkgbase']}@{w['commit'][:12]}")
    for p in doc.get("parked", []):
        state = "parked" if p["alone"] else "retrying alone"
        click.echo(
            f"{state}   {p['repo']}/{p['arch']} {p['pkgbase']}@{p['commit'][:12]}: refused by "
            "the enclave; submitted again only when new evidence arrives"
        )
        for why in p["reasons"][:5]:
            click.echo(f"         - {why}")
    for w in doc["waiting"]:
        click.echo(f"waiting  {w['repo']}/{w['pkgbase']}@{w['commit'][:12]}")
        for why in w["missing"]:
            click.echo(f"         - {why}")


@repo.command("cycle", epilog=EXIT_CODES)
@_machine_options
@_REFRESH
@click.option("--json", "as_json", is_flag=True)
def repo_cycle(
    folder: Path, mirror: Path, policy_path: Path, refresh_before: str, as_json: bool
) -> None:
    """Take every update cycle as far as it can go now: start one per repository and
    architecture with ready sources, and continue those waiting for the enclave. Each step
    is recorded; run it again (or let `repo serve` do it) after a crash or an answer."""
    from reposeal.repo.cycle import advance, machine
    from reposeal.repo.service import PolicyFile

    out = _Out(False, as_json)
    try:
        m = machine(folder, mirror, PolicyFile(policy_path).get())
        moved = advance(m, parse_duration(refresh_before))
    except ReposealError as exc:
        out.fail(exc)
    doc = [c.to_json() for c in moved]
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    for c in doc:
        click.echo(f"{c['id']}: {c['step']}")
        for why in c.get("reasons", []):
            click.echo(f"  - {why}")


@repo.command("move", epilog=EXIT_CODES)
@click.argument("pkgbase")
@click.argument("from_repo", metavar="FROM")
@click.argument("to_repo", metavar="TO")
@_machine_options
@click.option("--json", "as_json", is_flag=True)
def repo_move(
    pkgbase: str,
    from_repo: str,
    to_repo: str,
    folder: Path,
    mirror: Path,
    policy_path: Path,
    as_json: bool,
) -> None:
    """Move PKGBASE up a stability layer, FROM (e.g. testing) to TO (e.g. core), with all its
    split packages, on every architecture (and its -debug packages between the -debug
    twins). The policy's `may_move_to` orders the layers; a move that would jump over a layer
    holding PKGBASE, or leave TO newer than a layer below it, is refused (exit 3) and nothing
    is recorded. Otherwise the update cycle adds the very same signed files to TO and, once
    TO is published, removes them from FROM: each an enclave-signed transition."""
    from reposeal.protocol.lock import database_lock
    from reposeal.repo.cycle import advance, machine
    from reposeal.repo.move import request_move
    from reposeal.repo.service import PolicyFile

    out = _Out(False, as_json)
    try:
        m = machine(folder, mirror, PolicyFile(policy_path).get())
        with database_lock(m.cycles.folder / "cycles.lck", wait=60):
            moves = request_move(m, pkgbase, from_repo, to_repo)
        moved = advance(m)
    except ReposealError as exc:
        out.fail(exc)
    doc = {"moves": [mv.to_json() for mv in moves], "cycles": [c.to_json() for c in moved]}
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    for mv in moves:
        click.echo(f"moving {mv.pkgbase}: {mv.frm} -> {mv.to} ({mv.id})")
    for c in doc["cycles"]:
        click.echo(f"{c['id']}: {c['step']}")


@repo.command("adopt", epilog=EXIT_CODES)
@ADOPTION_STATEMENT
@ADOPTED_PACKAGES
@PACKAGERS_KEYRING
@_machine_options
@click.option("--json", "as_json", is_flag=True)
def repo_adopt(
    statement: Path,
    packages: Path,
    keyring: Path | None,
    folder: Path,
    mirror: Path,
    policy_path: Path,
    as_json: bool,
) -> None:
    """Bring an existing repository under the enclave: the files an admin-signed adoption
    statement names (checked here against it) go to the enclave as an adopt job of an
    update cycle of its own, which publishes the first signed databases like any other
    (with `repo serve --mirror` running, it goes on by itself). Only a repository with no
    published database can be adopted."""
    from reposeal.protocol.lock import database_lock
    from reposeal.repo.adoption import request_adoption
    from reposeal.repo.cycle import advance, machine
    from reposeal.repo.service import PolicyFile

    out = _Out(False, as_json)
    try:
        m = machine(folder, mirror, PolicyFile(policy_path).get())
        with database_lock(m.cycles.folder / "cycles.lck", wait=60):
            made = request_adoption(m, statement, packages, keyring, m.compression)
        moved = advance(m)
    except ReposealError as exc:
        out.fail(exc)
    except OSError as exc:
        out.fail(InputError(f"{exc.strerror or exc}: {exc.filename}"))
    doc = {"cycle": made.id, "files": len(made.plan.packages),
           "cycles": [c.to_json() for c in moved]}  # fmt: skip
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    click.echo(f"{made.id}: adopting {doc['files']} files of {made.repo}/{made.arch}")


@repo.command("remove", epilog=EXIT_CODES)
@click.argument("statements", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@_machine_options
@click.option("--json", "as_json", is_flag=True)
def repo_remove(
    statements: tuple[Path, ...], folder: Path, mirror: Path, policy_path: Path, as_json: bool
) -> None:
    """Remove packages: take removal statements signed by maintainers (`reposeal statement
    remove`, each STATEMENT with STATEMENT.sig beside it), as the source machine would push
    them, and start the cycle. With the policy's quorum of maintainers the enclave signs
    the database without them on every architecture, and their files go to the archive;
    short of it, nothing changes and the reason is shown."""
    from reposeal.evidence.files import read_document
    from reposeal.repo.cycle import advance, machine
    from reposeal.repo.service import PolicyFile

    out = _Out(False, as_json)
    try:
        policy = PolicyFile(policy_path).get()
        m = machine(folder, mirror, policy)
        for path in statements:
            m.intake.add_statement(policy, *read_document(path))
        waiting = [
            {"repo": s.repo, "pkgnames": list(s.pkgnames), "missing": missing}
            for s, _, missing in m.intake.removals(policy)
            if missing
        ]
        moved = advance(m)
    except ReposealError as exc:
        out.fail(exc)
    doc = {"waiting": waiting, "cycles": [c.to_json() for c in moved]}
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    for w in waiting:
        click.echo(f"waiting  {w['repo']}: remove {' '.join(w['pkgnames'])}")
        for why in w["missing"]:
            click.echo(f"         - {why}")
    for c in doc["cycles"]:
        click.echo(f"{c['id']}: {c['step']}")
