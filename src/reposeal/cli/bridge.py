"""`reposeal bridge`: the job queue the enclave polls, and the certificates for it."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from reposeal.cli import EXIT_CODES, _Out, main, options
from reposeal.cli.config import service_options
from reposeal.errors import InputError

if TYPE_CHECKING:
    from reposeal.protocol.bridge_client import BridgeClient


client_ca_option = click.option(
    "--client-ca",
    required=True,
    type=click.Path(exists=True, path_type=Path),
    help="Only clients with certificates from this CA get in; their role is in the cert.",
)

C = TypeVar("C", bound="BridgeClient")


@dataclass(frozen=True)
class ClientTls:
    """This machine's client certificate and key, and the one CA its servers' come from."""

    cert: Path
    key: Path
    ca: Path

    def connect(self, kind: type[C], url: str) -> C:
        """A mutual-TLS client of ``kind`` for ``url``, trusting only the CA."""
        from reposeal.tls import Issued, client_context

        return kind(url, client_context(Issued(self.cert, self.key), self.ca))


_tls_options = options(
    click.option("--cert", required=True, type=click.Path(exists=True, path_type=Path)),
    click.option("--key", required=True, type=click.Path(exists=True, path_type=Path)),
    click.option(
        "--ca",
        required=True,
        type=click.Path(exists=True, path_type=Path),
        help="The CA the servers' certificates come from (nothing else is trusted).",
    ),
)


def client_tls(f: Callable[..., Any]) -> Callable[..., Any]:
    """--cert, --key and --ca, given to the command as one ``tls: ClientTls``."""

    @functools.wraps(f)
    def command(**params: Any) -> Any:
        tls = ClientTls(params.pop("cert"), params.pop("key"), params.pop("ca"))
        return f(tls=tls, **params)

    return _tls_options(command)


_tls = options(click.option("--bridge", "url", required=True, help="https://HOST:PORT"), client_tls)


@main.group()
def bridge() -> None:
    """The enclave's job queue on the repo machine (HTTPS with mutual TLS)."""


@bridge.command("pki", epilog=EXIT_CODES)
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--ip",
    "ips",
    multiple=True,
    default=("127.0.0.1",),
    show_default=True,
    help="The bridge's (and source service's) addresses: each goes into both certificates.",
)
@click.option(
    "--also",
    multiple=True,
    metavar="NAME:ROLE",
    help="One more client certificate, e.g. builder2:builder (each builder needs its own).",
)
@click.option(
    "--host",
    "hosts",
    multiple=True,
    metavar="NAME=ROLE[,ADDR...]",
    help="A certificate for one machine of an inventory: its role and its addresses (IPs "
    "and DNS names, e.g. repo1=repo,10.0.0.5,repo1.example.org); with addresses it serves "
    "as well as calls.",
)
def bridge_pki(
    folder: Path, ips: tuple[str, ...], also: tuple[str, ...], hosts: tuple[str, ...]
) -> None:
    """Create a private CA and certificates for the bridge (the repo service), the source
    machine's service, an enclave, a repo client, a builder, the source machine (as the
    repo machine's client) and a maintainer. More of a role: `reposeal` issues one per
    person or machine in production; the role is in the certificate."""
    import ipaddress

    from reposeal.tls import issue, make_ca

    for ip in ips:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise click.BadParameter(
                f"{ip!r} is not an IP address (the certificates name the bridge by its "
                "address; a DNS name goes with --host)",
                param_hint="--ip",
            ) from None
    planned = [_host_spec(h) for h in hosts]  # every --host checked before anything is written
    ca = make_ca(folder)
    issue(ca, folder, "bridge", "bridge", addresses=list(ips))
    issue(ca, folder, "source-server", "source", addresses=list(ips))
    issue(ca, folder, "enclave", "enclave")
    for role in ("repo", "builder", "source", "maintainer"):
        issue(ca, folder, role, role)
    roles = "bridge and source-server (servers), enclave, repo, builder, source, maintainer"
    for extra in also:
        name, _, role = extra.partition(":")
        try:
            issue(ca, folder, name, role)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--also") from None
        roles += f", {name}"
    for name, role, addresses in planned:
        issue(ca, folder, name, role, addresses=addresses)
        roles += f", {name}"
    click.echo(f"wrote {ca.cert} and certificates for {roles} in {folder}")
    click.echo(
        f"KEEP {ca.key} OFFLINE: it makes certificates for every role, and no machine needs it "
        "to run (only `bridge renew` does)",
        err=True,
    )


def _host_spec(spec: str) -> tuple[str, str, list[str]]:
    """``NAME=ROLE[,ADDR...]`` checked: a known role, addresses that are IPs or DNS names."""
    from reposeal.tls import ROLES, alt_name

    name, sep, rest = spec.partition("=")
    role, *addresses = rest.split(",") if sep else [""]
    if not name or role not in (*ROLES, "bridge"):
        raise click.BadParameter(
            f"{spec!r}: give NAME=ROLE[,ADDR...] with a role of {', '.join((*ROLES, 'bridge'))}",
            param_hint="--host",
        )
    for a in addresses:
        try:
            alt_name(a)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--host") from None
    return name, role, addresses


@bridge.command("renew", epilog=EXIT_CODES)
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("names", nargs=-1, required=True)
@click.option("--days", type=click.IntRange(1, 3650), default=365, show_default=True)
def bridge_renew(folder: Path, names: tuple[str, ...], days: int) -> None:
    """Renew the certificates NAMES in FOLDER (as `bridge pki` wrote them): the same name,
    role and addresses, a new key, valid for DAYS. Needs FOLDER/ca.key (bring it back from
    where it is kept offline, then put it away again)."""
    from reposeal.tls import Issued, described, issue

    out = _Out(False, False)
    ca = Issued(folder / "ca.pem", folder / "ca.key")
    if not ca.key.exists():
        out.fail(InputError(f"{ca.key} is not here: renewing needs the CA key"))
    for name in names:
        cert = folder / f"{name}.pem"
        try:
            _, role, addresses = described(cert)
        except (OSError, ValueError, IndexError) as exc:
            out.fail(InputError(f"{cert} is not a certificate `bridge pki` made: {exc}"))
        issue(ca, folder, name, role, addresses=addresses, days=days)
        click.echo(f"renewed {cert} ({role}, {', '.join(addresses) or 'client only'})")


@bridge.command("serve", epilog=EXIT_CODES)
@service_options("bridge")
@click.option("--dir", "folder", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--listen", default="127.0.0.1:8443", show_default=True)
@click.option("--cert", required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--key", required=True, type=click.Path(exists=True, path_type=Path))
@client_ca_option
def bridge_serve(folder: Path, listen: str, cert: Path, key: Path, client_ca: Path) -> None:
    """Serve the job queue; only clients with certificates from CLIENT_CA get in."""
    from reposeal.repo.bridge import JobQueue, make_app

    serve_https(make_app(JobQueue(folder)), listen, cert, key, client_ca)


def serve_https(
    app: Any, listen: str, cert: Path, key: Path, client_ca: Path, component: str = "bridge"
) -> None:
    """Run an aiohttp app on HOST:PORT with mutual TLS (clients from ``client_ca`` only).
    Idle kept-alive connections are closed after 75 s (``REPOSEAL_KEEPALIVE`` seconds);
    every client of ours reopens them."""
    import ssl

    from reposeal.cli import _Out
    from reposeal.errors import InputError
    from reposeal.tls import Issued, server_context

    _check_listen(listen)
    try:
        context = server_context(Issued(cert, key), client_ca)
    except (ssl.SSLError, OSError) as exc:
        _Out(False, False).fail(
            InputError(f"the certificate, key or client CA does not load: {exc}")
        )
    serve(app, listen, context, component)


def _check_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.UsageError(f"--listen {listen!r}: give HOST:PORT, such as 127.0.0.1:8443")
    return host, int(port)


def serve(app: Any, listen: str, context: Any, component: str = "service") -> None:
    """Run an aiohttp app on HOST:PORT (TLS with ``context``, plain HTTP without); a port in
    use or forbidden is a one-line error. Logs ``listening`` once the port is bound."""
    import os

    from aiohttp import web

    from reposeal import logs
    from reposeal.cli import _Out
    from reposeal.errors import InputError

    host, port = _check_listen(listen)
    out = _Out(False, False)
    try:
        web.run_app(
            app,
            host=host,
            port=port,
            ssl_context=context,
            print=lambda _: logs.info(component, "listening", address=listen, tls=bool(context)),
            shutdown_timeout=5,  # open long polls do not hold a stop for a minute
            keepalive_timeout=float(os.environ.get("REPOSEAL_KEEPALIVE", "75")),
        )
    except OSError as exc:
        out.fail(InputError(_bind_error(listen, "--listen", exc)))


def _bind_error(listen: str, option: str, exc: OSError) -> str:
    import errno

    if exc.errno == errno.EADDRINUSE:
        return f"{listen} is in use by another program: choose another {option}"
    if exc.errno == errno.EACCES:
        return f"{listen}: permission denied (ports below 1024 need root)"
    return f"cannot listen on {listen}: {exc.strerror or exc}"


PUBLIC_LISTEN = click.option(
    "--public-listen",
    metavar="HOST:PORT",
    help="Also serve the status page (/) and Prometheus metrics (/metrics) over plain HTTP "
    "here (what they show is public; bind to 127.0.0.1 behind a proxy to keep it local).",
)


HOSTCHECK_DIR = click.option(
    "--hostcheck-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Show on the status page the host checks' results kept here (the roles: "
    "/var/lib/reposeal, where `reposeal hostcheck --metrics-file` writes them).",
)


def add_public_site(app: Any, public: Any, listen: str, component: str) -> None:
    """Serve ``public`` (plain HTTP: the status page and /metrics, which anyone may read)
    on ``listen`` for as long as ``app`` runs."""
    from aiohttp import web

    from reposeal import logs
    from reposeal.cli import _Out
    from reposeal.errors import InputError

    runner_key = web.AppKey("public_runner", web.AppRunner)

    host, port = _check_listen(listen)

    async def start(_: Any) -> None:
        runner = web.AppRunner(public)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as exc:
            _Out(False, False).fail(InputError(_bind_error(listen, "--public-listen", exc)))
        app[runner_key] = runner
        logs.info(component, "listening", address=listen, tls=False, serves="status, metrics")

    async def stop(_: Any) -> None:
        if runner_key in app:
            await app[runner_key].cleanup()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)


def _client(tls: ClientTls, url: str) -> BridgeClient:
    from reposeal.protocol.bridge_client import BridgeClient

    return tls.connect(BridgeClient, url)


@bridge.command("submit", epilog=EXIT_CODES)
@_tls
@click.option("--job-id", required=True)
@click.option(
    "--kind", type=click.Choice(["transition", "refresh"]), default="transition",
    show_default=True,
)  # fmt: skip
@click.option("--repo", required=True)
@click.option("--arch", required=True)
@click.option(
    "--add",
    "adds",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A package file to add; repeatable.",
)
@click.option("--move", "moves", multiple=True, metavar="FROM=FILE", help="A file moving up.")
@click.option("--remove", "removes", multiple=True, help="A package name to remove.")
@click.option("--evidence", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--parent", help="sha256 of the last signed database ('none' for the first).")
def bridge_submit(
    url: str,
    tls: ClientTls,
    job_id: str,
    kind: str,
    repo: str,
    arch: str,
    adds: tuple[Path, ...],
    moves: tuple[str, ...],
    removes: tuple[str, ...],
    evidence: Path | None,
    parent: str | None,
) -> None:
    """Upload a job's files and queue it for the enclave (role repo): a transition (files
    to add, files moving up from a lower layer, names to remove) or a refresh of the latest
    databases' signatures. The enclave writes the databases itself."""
    from reposeal.cli import _Out
    from reposeal.errors import ReposealError

    out = _Out(False, False)
    moved: list[tuple[str, Path]] = []
    for item in moves:
        layer, sep, file = item.partition("=")
        if not sep or not Path(file).is_file():
            raise click.UsageError(f"--move {item!r}: name an existing file as FROM=FILE")
        moved.append((layer, Path(file)))
    try:
        changes = (adds, moved, removes)
        sent = _client(tls, url).submit_transition(
            job_id, kind, repo, arch, changes, evidence, parent
        )
    except ReposealError as exc:
        out.fail(exc)
    click.echo(f"queued {job_id} ({sent} files)")


@bridge.command("result", epilog=EXIT_CODES)
@_tls
@click.option("--job-id", required=True)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the signature here when the job was signed.",
)
def bridge_result(url: str, tls: ClientTls, job_id: str, output: Path | None) -> None:
    """Show a job's state and result; exit 0 signed, 3 refused, 1 still waiting."""
    import base64
    import json
    import sys

    from reposeal.cli import _Out
    from reposeal.errors import ReposealError

    out = _Out(False, True)
    try:
        doc = _client(tls, url).job(job_id)
    except ReposealError as exc:
        out.fail(exc)
    click.echo(json.dumps(doc, indent=2))
    result = doc.get("result") or {}
    if output is not None and result.get("signature"):
        output.write_bytes(base64.b64decode(result["signature"]))
    if not result:
        sys.exit(1)
    sys.exit(0 if result.get("decision") == "accept" else 3)
