"""One config file per role (``/etc/reposeal/ROLE.toml``), read with the standard library.

``reposeal repo serve --config /etc/reposeal/repo.toml``: every option of the command may be
set there, named as on the command line without the dashes (``client-ca = "..."`` or
``client_ca = "..."``); flags given on the command line override the file. A key the command
does not know is an error naming the keys it does (a typo never passes silently), and so is
a value of the wrong kind.

    # /etc/reposeal/repo.toml
    dir = "/var/lib/reposeal/repo"
    listen = "0.0.0.0:8443"
    cert = "/etc/reposeal/bridge.pem"
    mirror = "/srv/mirror"
    log-format = "json"
"""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from reposeal.alpm.limits import MAX_CONFIG_BYTES

F = TypeVar("F", bound=Callable[..., Any])


def _names(command: click.Command) -> dict[str, click.Parameter]:
    """Each parameter a file may set, by every spelling it accepts."""
    out: dict[str, click.Parameter] = {}
    for p in command.params:
        if not isinstance(p, click.Option) or p.name in (None, "config") or p.hidden:
            continue
        out[p.name] = p
        for opt in p.opts:
            if opt.startswith("--"):
                out[opt[2:]] = p
                out[opt[2:].replace("-", "_")] = p
    return out


def _value(key: str, value: Any, param: click.Parameter, path: Path) -> Any:
    """A TOML value as the option takes it (lists for options given several times)."""
    allowed = (str, int, float, bool)
    if param.multiple or (param.nargs != 1):
        if not isinstance(value, list) or not all(isinstance(v, allowed) for v in value):
            raise click.BadParameter(f"{key} must be a list in {path}")
        return [str(v) if not isinstance(v, bool) else v for v in value]
    if isinstance(param, click.Option) and param.is_flag:
        if not isinstance(value, bool):
            raise click.BadParameter(f"{key} must be true or false in {path}")
        return value
    if not isinstance(value, allowed) or isinstance(value, bool):
        raise click.BadParameter(f"{key} must be a string or a number in {path}")
    return str(value)


def load(path: Path, command: click.Command) -> dict[str, Any]:
    """The defaults ``path`` gives ``command``'s options (by parameter name)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise click.BadParameter(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise click.BadParameter(f"{path} is larger than {MAX_CONFIG_BYTES} bytes")
    try:
        doc = tomllib.loads(raw.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise click.BadParameter(f"{path} is not valid TOML: {exc}") from None
    known = _names(command)
    unknown = sorted(k for k in doc if k not in known)
    if unknown:
        spellings = sorted({p.opts[-1].lstrip("-") for p in known.values()})
        raise click.BadParameter(
            f"{path}: {', '.join(unknown)} is not an option of this command (it takes: "
            f"{', '.join(spellings)})"
        )
    defaults: dict[str, Any] = {}
    for key, value in doc.items():
        param = known[key]
        if param.name is not None:  # (_names skips unnamed ones)
            defaults[param.name] = _value(key, value, param, path)
    return defaults


def _apply(ctx: click.Context, _param: click.Parameter, value: Path | None) -> None:
    if value is None:
        return
    ctx.default_map = {**(ctx.default_map or {}), **load(value, ctx.command)}


def config_option(role: str) -> Callable[[F], F]:
    """``--config FILE``: read the command's options from a TOML file first."""
    return click.option(
        "--config",
        type=click.Path(dir_okay=False, path_type=Path),
        is_eager=True,
        expose_value=False,
        callback=_apply,
        help=f"Read these options from a TOML file first (/etc/reposeal/{role}.toml; keys "
        "are the option names; the command line overrides it).",
    )


def service_options(role: str) -> Callable[[F], F]:
    """What every long-running command takes: ``--config``, and where its log lines go
    (``--log-format text|json``, ``--log-level``), set up before the command starts."""
    from reposeal import logs

    def decorate(f: F) -> F:
        @functools.wraps(f)
        def run(*args: Any, log_format: str, log_level: str, **kwargs: Any) -> Any:
            logs.setup(log_format, log_level)
            return f(*args, **kwargs)

        wrapped: Any = run
        wrapped = click.option(
            "--log-level",
            type=click.Choice(logs.LEVELS),
            default="info",
            show_default=True,
            help="Leave out events below this level.",
        )(wrapped)
        wrapped = click.option(
            "--log-format",
            type=click.Choice(logs.FORMATS),
            default="text",
            show_default=True,
            help="One line per event on stdout, with time and level: text, or a JSON object.",
        )(wrapped)
        return config_option(role)(wrapped)  # type: ignore[no-any-return]

    return decorate
