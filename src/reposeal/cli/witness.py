"""`reposeal witness keygen` and `reposeal witness serve`: a C2SP tlog-witness."""

from __future__ import annotations

from pathlib import Path

import click

from reposeal.cli import EXIT_CODES, _Out, main
from reposeal.cli.config import service_options
from reposeal.errors import InputError, ReposealError


@main.group()
def witness() -> None:
    """A witness: cosigns a log's checkpoints, never two that are inconsistent."""


@witness.command("keygen", epilog=EXIT_CODES)
@click.option("--name", required=True, help="The witness's name, e.g. witness.example.org/w1.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path))
def keygen(name: str, output: Path) -> None:
    """Make a witness key (Ed25519, cosignature/v1): the private key goes to OUTPUT (mode
    0600), the public vkey, for policies, is printed."""
    import os

    from reposeal.translog.cosignature import Cosigner

    out = _Out(False, False)
    try:
        signer = Cosigner.generate(name)
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        out.fail(InputError(f"{output} exists: a witness key is never overwritten"))
    except ReposealError as exc:
        out.fail(exc)
    except OSError as exc:
        out.fail(InputError(f"cannot write {output}: {exc.strerror or exc}"))
    with os.fdopen(fd, "w") as f:
        f.write(signer.encode() + "\n")
    click.echo(signer.key.encode())


@witness.command("serve", epilog=EXIT_CODES)
@service_options("witness")
@click.option("--db", "db_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Its state (SQLite): the last checkpoint cosigned per log.")  # fmt: skip
@click.option("--key", "key_path", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The private key `witness keygen` wrote.")  # fmt: skip
@click.option("--log", "logs", multiple=True, required=True, metavar="[ORIGIN=]VKEY",
              help="A log to witness: its checkpoint key (the enclave's `note_verifier`); "
              "the origin is the key's name unless given.")  # fmt: skip
@click.option("--listen", default="127.0.0.1:8447", show_default=True)
@click.option("--server-cert", type=click.Path(exists=True, path_type=Path),
              help="Serve HTTPS with this certificate (default: plain HTTP).")  # fmt: skip
@click.option("--server-key", type=click.Path(exists=True, path_type=Path))
def serve(
    db_path: Path,
    key_path: Path,
    logs: tuple[str, ...],
    listen: str,
    server_cert: Path | None,
    server_key: Path | None,
) -> None:
    """Serve C2SP tlog-witness `POST /add-checkpoint` for the logs given: a checkpoint is
    cosigned only if it is signed by the log's key and consistent with the last one
    cosigned for that log, which is stored before the answer leaves."""
    import ssl

    from reposeal.cli.bridge import serve as serve_app
    from reposeal.witness.service import Witness, load_cosigner, load_logs, make_app, say
    from reposeal.witness.store import WitnessStore

    out = _Out(False, False)
    try:
        cosigner = load_cosigner(key_path)
        known = load_logs(list(logs))
        store = WitnessStore(db_path)
    except ReposealError as exc:
        out.fail(exc)
    except OSError as exc:
        out.fail(InputError(f"cannot open the witness state or key: {exc}"))
    context = None
    if server_cert is not None:
        if server_key is None:
            raise click.UsageError("--server-cert needs --server-key")
        try:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(server_cert, server_key)
        except (ssl.SSLError, OSError) as exc:
            out.fail(InputError(f"the server certificate or key does not load: {exc}"))
    say(f"{cosigner.key.encode()} witnessing {', '.join(sorted(known))} on {listen}")
    serve_app(make_app(Witness(store, cosigner, known)), listen, context, "witness")
