"""`reposeal source serve`, `reposeal proposals`, `reposeal approve`, `reposeal withdraw`,
`reposeal builder run`: the source machine, its maintainers and its builders."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import click

from reposeal.cli import EXIT_CODES, _Out, main
from reposeal.cli.bridge import (
    HOSTCHECK_DIR,
    PUBLIC_LISTEN,
    ClientTls,
    add_public_site,
    client_ca_option,
    client_tls,
    serve_https,
)
from reposeal.cli.config import service_options
from reposeal.cli.documents import GNUPGHOME_OPTION
from reposeal.errors import ReposealError

if TYPE_CHECKING:
    from reposeal.protocol.source_client import SourceClient


def _source(tls: ClientTls, url: str) -> SourceClient:
    from reposeal.protocol.source_client import SourceClient

    return tls.connect(SourceClient, url)


@main.group()
def source() -> None:
    """The source machine: PKGBUILD repositories, approvals, build jobs."""


@source.command("serve", epilog=EXIT_CODES)
@service_options("source")
@click.option("--dir", "folder", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--repos",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A PKGBUILD git repository (named after its pkgbase) or a folder of them.",
)
@click.option("--listen", default="127.0.0.1:8444", show_default=True)
@click.option("--server-cert", required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--server-key", required=True, type=click.Path(exists=True, path_type=Path))
@client_ca_option
@click.option(
    "--policy",
    "policy_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The policy (with POLICY.sig): maintainer keys and the approval quorum.",
)
@click.option("--target", default="core", show_default=True, help="The default repository.")
@click.option("--repo-url", help="The repo machine (https://HOST:PORT), to send approvals to.")
@client_tls
@click.option("--poll", default=5.0, show_default=True, help="Seconds between git scans.")
@PUBLIC_LISTEN
@HOSTCHECK_DIR
def source_serve(
    folder: Path,
    repos: Path,
    listen: str,
    server_cert: Path,
    server_key: Path,
    client_ca: Path,
    policy_path: Path,
    target: str,
    repo_url: str | None,
    tls: ClientTls,
    poll: float,
    public_listen: str | None,
    hostcheck_dir: Path | None,
) -> None:
    """Watch the PKGBUILD repositories, collect approvals, hand out build jobs. --cert/--key
    (role "source") is how this machine reaches the repo machine. With --public-listen, the
    status page (each proposal's approvers and what it still needs) and /metrics."""
    from reposeal.repo.service import PolicyFile
    from reposeal.source.service import Source, make_app, make_public_app

    policy = PolicyFile(policy_path)
    try:
        policy.get()
    except ReposealError as exc:
        _Out(False, False).fail(exc)
    repo_machine = _source(tls, repo_url) if repo_url else None
    source = Source(folder, repos, policy.get, target, repo_machine)
    app = make_app(source, poll)
    if public_listen:
        add_public_site(app, make_public_app(source, hostcheck_dir), public_listen, "source")
    serve_https(app, listen, server_cert, server_key, client_ca, component="source")


_SOURCE = click.option("--source", "url", required=True, help="https://HOST:PORT")


@main.command("proposals", epilog=EXIT_CODES)
@_SOURCE
@client_tls
@click.option("--json", "as_json", is_flag=True)
def proposals(url: str, tls: ClientTls, as_json: bool) -> None:
    """What waits for whom: each proposal's approvals, and its builds (with any
    disagreement between builders, file by file)."""
    out = _Out(False, as_json)
    try:
        docs = _source(tls, url).proposals()
    except ReposealError as exc:
        out.fail(exc)
    if as_json:
        click.echo(json.dumps(docs, indent=2))
        return
    for p in docs:
        click.echo(f"{p['pkgbase']} {p['commit'][:12]}  {p['subject']}  ({p['author_email']})")
        for repo, a in p["approvals"].items():
            state = "approved" if not a["missing"] else "; ".join(a["missing"])
            click.echo(f"    {repo}: {len(a['signers'])} approvals, {state}")
        for repo, who in p.get("withdrawn", {}).items():
            click.echo(f"    {repo}: WITHDRAWN by {', '.join(k[-16:] for k in who)}")
        for job in p["jobs"]:
            click.echo(
                f"    build {job['id']}: built by {', '.join(job['built_by']) or 'nobody yet'}"
            )
            for line in job["differences"]:
                click.echo(f"      DISAGREEMENT {line}")


@main.command("approve", epilog=EXIT_CODES)
@click.argument("pkgbase")
@click.argument("commit")
@_SOURCE
@client_tls
@click.option("--signer", "spec", required=True, metavar="SPEC", help="soft:PATH or gpg:FPR")
@GNUPGHOME_OPTION
@click.option("--repo", help="The repository to approve it for (default: the source's).")
@click.option("--yes", is_flag=True, help="Do not ask; the diff is still shown.")
@click.option("--json", "as_json", is_flag=True)
def approve(
    pkgbase: str,
    commit: str,
    url: str,
    tls: ClientTls,
    spec: str,
    gnupghome: Path | None,
    repo: str | None,
    yes: bool,
    as_json: bool,
) -> None:
    """Approve COMMIT of PKGBASE: shows what changed since the last built commit (so
    nobody approves blind), signs an approval statement binding that exact commit and its
    PKGBUILD, and sends it to the source machine."""
    import io

    from reposeal.evidence.statements import Approval, to_bytes
    from reposeal.openpgp.spec import signer_from_spec

    out = _Out(False, as_json)
    try:
        client = _source(tls, url)
        doc = client.proposal(pkgbase, commit)
        since = doc["last_built"][:12] if doc["last_built"] else "nothing built yet"
        click.echo(f"{pkgbase} {commit[:12]}: {doc['subject']} (since {since})", err=True)
        click.echo(doc["diff"], err=True)
        if not yes and not click.confirm("Approve this change?", err=True):
            raise click.Abort()
        stmt = Approval(
            repo or doc["target"], pkgbase, commit, doc["pkgbuild_sha256"], doc["author"]
        )
        raw = to_bytes(stmt)
        signature = signer_from_spec(spec, gnupghome).sign_detached(io.BytesIO(raw))
        answer = client.approve(raw, signature)
    except ReposealError as exc:
        out.fail(exc)
    if as_json:
        click.echo(json.dumps(answer, indent=2))
        return
    click.echo(f"approved; counted: {len(answer['counted'])}")
    for why in answer["missing"]:
        click.echo(f"waiting for {why}")
    if answer["job"]:
        click.echo(f"build job {answer['job']} created")


@main.command("withdraw", epilog=EXIT_CODES)
@click.argument("pkgbase")
@click.argument("commit")
@_SOURCE
@client_tls
@click.option("--signer", "spec", required=True, metavar="SPEC", help="soft:PATH or gpg:FPR")
@GNUPGHOME_OPTION
@click.option("--repo", required=True, help="The repository it was approved for.")
@click.option("--json", "as_json", is_flag=True)
def withdraw(
    pkgbase: str,
    commit: str,
    url: str,
    tls: ClientTls,
    spec: str,
    gnupghome: Path | None,
    repo: str,
    as_json: bool,
) -> None:
    """Withdraw COMMIT of PKGBASE from REPO before it is published: the source machine
    hands its build to no builder any more and tells the repo machine, which drops it.
    One maintainer is enough (dropping is the safe side)."""
    import io

    from reposeal.evidence.statements import Withdrawal, to_bytes
    from reposeal.openpgp.spec import signer_from_spec

    out = _Out(False, as_json)
    try:
        raw = to_bytes(Withdrawal(repo, pkgbase, commit))
        signature = signer_from_spec(spec, gnupghome).sign_detached(io.BytesIO(raw))
        answer = _source(tls, url).withdraw(raw, signature)
    except ReposealError as exc:
        out.fail(exc)
    if as_json:
        click.echo(json.dumps(answer, indent=2))
        return
    click.echo(f"withdrawn {pkgbase} {commit[:12]} from {repo}; no builder takes it any more")


@main.group()
def builder() -> None:
    """Builders: reproducible builds in fresh sandboxes, attested."""


@builder.command("run", epilog=EXIT_CODES)
@service_options("builder")
@_SOURCE
@click.option("--repo-url", required=True, help="The repo machine (https://HOST:PORT).")
@client_tls
@click.option("--signer", "spec", required=True, metavar="SPEC", help="soft:PATH or gpg:FPR")
@GNUPGHOME_OPTION
@click.option(
    "--workdir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where each job gets its fresh build folder.",
)
@click.option(
    "--build-command",
    default=None,
    help="The build inside the sandbox (default: makepkg); e.g. a devtools clean-chroot "
    "build on an Arch host.",
)
@click.option("--user", default="reposeal-build", show_default=True, help="Who builds.")
@click.option("--once", is_flag=True, help="Build what is there, then stop.")
@click.option("--wait", default=30.0, show_default=True, help="Long-poll seconds.")
@click.option(
    "--arch",
    default=os.uname().machine,
    show_default=True,
    help="This builder's architecture: it takes the jobs of it (the source machine makes a "
    "job per architecture of the repository).",
)
@click.option(
    "--metrics-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Keep Prometheus metrics here after every job, for node_exporter's textfile "
    "collector (a builder opens no port).",
)
def builder_run(
    url: str,
    repo_url: str,
    tls: ClientTls,
    spec: str,
    gnupghome: Path | None,
    workdir: Path,
    build_command: str | None,
    user: str,
    once: bool,
    wait: float,
    arch: str,
    metrics_file: Path | None,
) -> None:
    """Take build jobs from the source machine, build each in a fresh bubblewrap sandbox
    (no network during the build, SOURCE_DATE_EPOCH from the commit, an unprivileged user),
    sign a build statement per package and upload both to the repo machine."""
    from reposeal.builder.run import DEFAULT_COMMAND, run
    from reposeal.openpgp.spec import signer_from_spec

    out = _Out(False, False)
    try:
        count = run(
            _source(tls, url),
            _source(tls, repo_url),
            signer_from_spec(spec, gnupghome),
            workdir,
            command=build_command or DEFAULT_COMMAND,
            user=user,
            once=once,
            wait=wait,
            arch=arch,
            metrics_file=metrics_file,
        )
    except ReposealError as exc:
        out.fail(exc)
    click.echo(f"built {count} job(s)")
