"""``reposeal`` command line: argument parsing and output only; the work lives elsewhere."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from reposeal import __version__
from reposeal.alpm.vercmp import vercmp as _vercmp
from reposeal.errors import RefusedError, ReposealError

EXIT_CODES = """\b
Exit codes:
  0  success
  1  bad input (malformed or hostile package, database or signature)
  2  usage error
  3  refused: downgrade, same version with other content, unknown package;
     nothing was written
  4  the database is locked by another writer
  5  signing or signature verification failed
  6  a required tool or key is missing
  130 interrupted (Ctrl-C); nothing half-written is left
"""


F = TypeVar("F", bound=Callable[..., Any])


def options(*decorators: Callable[[F], F]) -> Callable[[F], F]:
    """Several click options as one decorator (listed in the order --help shows them)."""

    def apply(f: F) -> F:
        for decorate in reversed(decorators):
            f = decorate(f)
        return f

    return apply


class _Out:
    """Progress to stderr (unless quiet), results to stdout (JSON with --json)."""

    def __init__(self, quiet: bool, as_json: bool) -> None:
        self.quiet = quiet
        self.as_json = as_json

    def progress(self, msg: str) -> None:
        if not self.quiet and not self.as_json:
            click.echo(f"==> {msg}", err=True)

    def fail(self, exc: ReposealError) -> NoReturn:
        if self.as_json:
            doc: dict[str, Any] = {"ok": False, "error": str(exc), "kind": type(exc).__name__}
            if isinstance(exc, RefusedError):
                doc["reasons"] = exc.reasons
            click.echo(json.dumps(doc, indent=2))
        else:
            click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)


@click.group(epilog=EXIT_CODES)
@click.version_option(__version__, prog_name="reposeal")
def main() -> None:
    """Sign pacman repositories so that no single person, machine, replay or downgrade can
    put a package in front of users.

    Start with `reposeal db add`: repo-add's job with the same options, refusing downgrades,
    never leaving a half-written database, and much faster.
    """


@main.command("vercmp")
@click.argument("a")
@click.argument("b")
def vercmp_cmd(a: str, b: str) -> None:
    """Compare two versions as pacman does; print -1, 0 or 1."""
    click.echo(str(_vercmp(a, b)))


ALIASES = ("repo-add", "repo-remove")
# The command modules a first argument needs: the commands scripts run in loops (repo-add
# after every build) load only their own module; any other word loads them all.
_MODULES = {"db": ("db",), "repo-add": ("repoadd",), "repo-remove": ("repoadd",)}
_ALL = ("adopt", "backup", "bridge", "client", "db", "docs", "enclave", "hostcheck", "key",
        "keyring", "policy", "repo", "repoadd", "source", "statement", "witness")  # fmt: skip


def _register(first: str) -> None:
    """Import the command modules (each adds its commands to ``main``) ``first`` needs."""
    import importlib

    for module in _MODULES.get(first, _ALL):
        importlib.import_module(f"reposeal.cli.{module}")


def run() -> None:
    """Console entry point: register every command group, then run. Exit codes scripts can
    use: a usage error is 2, Ctrl-C (SIGINT) is 130, as shells report it."""
    alias = Path(sys.argv[0]).name  # installed as repo-add / repo-remove (db install-links)
    if alias in ALIASES:
        sys.argv[1:1] = [alias]
    _register(sys.argv[1] if len(sys.argv) > 1 else "")
    try:
        main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("\ninterrupted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("\ninterrupted", err=True)
        sys.exit(130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        if "--json" in sys.argv[1:]:  # a script asked for JSON: it gets JSON, always
            doc = {"ok": False, "error": exc.format_message(), "kind": "UsageError"}
            click.echo(json.dumps(doc, indent=2))
        exc.show()
        sys.exit(1 if alias in ALIASES else exc.exit_code)  # repo-add exits 1 on bad usage
    except OSError as exc:  # a full disk, a folder without permission: say which, no trace
        where = f" ({exc.filename})" if exc.filename else ""
        message = f"{exc.strerror or exc}{where}"
        if "--json" in sys.argv[1:]:
            click.echo(json.dumps({"ok": False, "error": message, "kind": "OSError"}, indent=2))
        click.echo(f"error: {message}", err=True)
        sys.exit(1)
