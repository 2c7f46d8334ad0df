"""`reposeal man` and `reposeal completion`: man pages and shell completion, made from the
commands themselves (so they never drift from `--help`)."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from pathlib import Path

import click

from reposeal import __version__
from reposeal.cli import EXIT_CODES, main

SHELLS = {
    "bash": "/usr/share/bash-completion/completions/reposeal",
    "zsh": "/usr/share/zsh/vendor-completions/_reposeal",
    "fish": "/usr/share/fish/vendor_completions.d/reposeal.fish",
}


def _roff(text: str) -> str:
    """Plain text as roff: backslashes doubled, a leading dot or quote made literal."""
    out = []
    for line in text.replace("\\", "\\e").splitlines():
        out.append("\\&" + line if line.startswith((".", "'")) else line)
    return "\n".join(out)


def _paragraphs(text: str) -> str:
    """A docstring as roff paragraphs (click's no-rewrap marks dropped)."""
    import inspect

    body = inspect.cleandoc(click.unstyle(text).replace("\b\n", ""))
    paragraphs = [" ".join(line.strip() for line in p.splitlines()) for p in body.split("\n\n")]
    return "\n.PP\n".join(_roff(p) for p in paragraphs if p)


def _commands(
    group: click.Group, ctx: click.Context, path: tuple[str, ...]
) -> Iterator[tuple[tuple[str, ...], click.Command, click.Context]]:
    for name in sorted(group.list_commands(ctx)):
        cmd = group.get_command(ctx, name)
        if cmd is None or cmd.hidden:
            continue
        sub = click.Context(cmd, info_name=name, parent=ctx)
        yield (*path, name), cmd, sub
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, sub, (*path, name))


def _page(path: tuple[str, ...], cmd: click.Command, ctx: click.Context, date: str) -> str:
    title = "-".join(("reposeal", *path))
    usage = cmd.collect_usage_pieces(ctx)
    lines = [
        f'.TH "{title.upper()}" 1 "{date}" "reposeal {__version__}" "reposeal manual"',
        ".SH NAME",
        f"{title} \\- {_roff(cmd.get_short_help_str(200))}",
        ".SH SYNOPSIS",
        f".B {' '.join(('reposeal', *path))}",
        _roff(" ".join(usage)),
        ".SH DESCRIPTION",
        _paragraphs(cmd.help or ""),
    ]
    options = [p for p in cmd.get_params(ctx) if isinstance(p, click.Option) and not p.hidden]
    if options:
        lines.append(".SH OPTIONS")
        for p in options:
            record = p.get_help_record(ctx)
            if record is None:
                continue
            lines += [".TP", f"\\fB{_roff(record[0])}\\fR", _roff(record[1])]
    if isinstance(cmd, click.Group):
        lines.append(".SH COMMANDS")
        for name in sorted(cmd.list_commands(ctx)):
            sub = cmd.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                lines += [".TP", f"\\fB{name}\\fR", _roff(sub.get_short_help_str(200)),
                          f"See \\fB{title}-{name}\\fR(1)."]  # fmt: skip
    lines += [".SH EXIT STATUS", ".nf", _roff(EXIT_CODES.replace("\b\n", "")), ".fi"]
    lines += [".SH SEE ALSO", "\\fBreposeal\\fR(1), \\fBrepo-add\\fR(8), \\fBpacman\\fR(8)"]
    return "\n".join(lines) + "\n"


def man_pages(date: str | None = None) -> dict[str, str]:
    """Every man page: ``reposeal.1`` and one per command (``reposeal-db-add.1``)."""
    from reposeal.cli import _register

    _register("")
    day = date or datetime.date.today().isoformat()
    root = click.Context(main, info_name="reposeal")
    pages = {"reposeal.1": _page((), main, root, day)}
    for path, cmd, ctx in _commands(main, root, ()):
        pages["-".join(("reposeal", *path)) + ".1"] = _page(path, cmd, ctx, day)
    return pages


@main.command("man")
@click.option("-o", "--output", "folder", required=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Where to write the pages (e.g. /usr/share/man/man1).")  # fmt: skip
def man_cmd(folder: Path) -> None:
    """Write a man page for reposeal and for each of its commands, made from their --help."""
    from reposeal.fsio import atomic_write

    folder.mkdir(parents=True, exist_ok=True)
    pages = man_pages()
    for name, text in pages.items():
        atomic_write(folder / name, text.encode())
    click.echo(f"wrote {len(pages)} man pages in {folder}")


@main.command("completion")
@click.argument("shell", type=click.Choice(sorted(SHELLS)))
def completion_cmd(shell: str) -> None:
    """Print the completion script for SHELL; install it where the shell finds it, e.g.
    `reposeal completion bash > /usr/share/bash-completion/completions/reposeal` (the
    ansible roles do)."""
    from click.shell_completion import get_completion_class

    from reposeal.cli import _register

    _register("")
    cls = get_completion_class(shell)
    if cls is None:
        raise click.UsageError(f"no completion for {shell}")
    click.echo(cls(main, {}, "reposeal", "_REPOSEAL_COMPLETE").source())
