"""`reposeal bridge`: the job queue the enclave polls, and the certificates for it."""

from __future__ import annotations

from pathlib import Path

import click

from reposeal.cli import EXIT_CODES, main


@main.group()
def bridge() -> None:
    """The enclave's job queue on the repo machine (HTTPS with mutual TLS)."""


@bridge.command("pki", epilog=EXIT_CODES)
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--ip", default="127.0.0.1", show_default=True, help="The bridge's address.")
def bridge_pki(folder: Path, ip: str) -> None:
    """Create a private CA and certificates for the bridge, an enclave and a repo client."""
    from reposeal.tls import issue, make_ca

    ca = make_ca(folder)
    issue(ca, folder, "bridge", "bridge", server_ip=ip)
    issue(ca, folder, "enclave", "enclave")
    issue(ca, folder, "repo", "repo")
    click.echo(f"wrote {ca.cert} and bridge, enclave, repo certificates in {folder}")


@bridge.command("serve", epilog=EXIT_CODES)
@click.option("--dir", "folder", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--listen", default="127.0.0.1:8443", show_default=True)
@click.option("--cert", required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--key", required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--client-ca", required=True, type=click.Path(exists=True, path_type=Path))
def bridge_serve(folder: Path, listen: str, cert: Path, key: Path, client_ca: Path) -> None:
    """Serve the job queue; only clients with certificates from CLIENT_CA get in."""
    from aiohttp import web

    from reposeal.repo.bridge import JobQueue, make_app
    from reposeal.tls import Issued, server_context

    host, _, port = listen.rpartition(":")
    app = make_app(JobQueue(folder))
    web.run_app(
        app,
        host=host,
        port=int(port),
        ssl_context=server_context(Issued(cert, key), client_ca),
        print=None,
    )
