"""The repositories a pacman.conf names, with the first Server of each, as pacman reads it:
``Include`` followed in any section (globs expanded), ``RootDir`` moving the default
``DBPath`` under it, and pacman's own ``--config``/``--root``/``--dbpath`` when a hook asks
for the configuration of the pacman that runs it."""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from reposeal.errors import InputError


@dataclass(frozen=True)
class Repo:
    name: str
    server: str  # $repo and $arch filled in


@dataclass(frozen=True)
class PacmanConf:
    dbpath: Path
    arch: str
    repos: list[Repo]
    root: Path = Path("/")


def _lines(path: Path, depth: int = 0) -> list[str]:
    if depth > 4:
        raise InputError("pacman.conf includes nest too deep", path=path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", path=path) from None
    return [line.split("#", 1)[0].strip() for line in text.splitlines()]


def read_pacman_conf(path: Path) -> PacmanConf:
    section = None
    options: dict[str, str] = {}
    servers: dict[str, list[str]] = {}
    order: list[str] = []

    def take(lines: list[str], depth: int) -> None:
        nonlocal section
        for line in lines:
            if not line:
                continue
            if line.startswith("[") and line.endswith("]"):
                section = line[1:-1]
                if section != "options" and section not in servers:
                    servers[section] = []
                    order.append(section)
                continue
            key, _, value = (p.strip() for p in line.partition("="))
            if key == "Include":  # pacman takes it in any section, with glob patterns
                for included in sorted(glob.glob(value)) or [value]:
                    take(_lines(Path(included), depth + 1), depth + 1)
            elif section == "options":
                options[key] = value
            elif section is not None and key == "Server":
                servers[section].append(value)

    take(_lines(path), 0)
    arch = options.get("Architecture", "auto").split()[0]
    if arch == "auto":
        arch = os.uname().machine
    repos = [
        Repo(name, servers[name][0].replace("$repo", name).replace("$arch", arch))
        for name in order
        if servers[name]
    ]
    root = Path(options.get("RootDir", "/"))
    default_db = root / "var/lib/pacman" if "RootDir" in options else Path("/var/lib/pacman/")
    return PacmanConf(Path(options.get("DBPath", str(default_db))), arch, repos, root)


@dataclass(frozen=True)
class PacmanArgs:
    """What a pacman command line says about its configuration."""

    config: Path = Path("/etc/pacman.conf")
    root: Path | None = None
    dbpath: Path | None = None


def pacman_args(argv: Sequence[str]) -> PacmanArgs:
    """``--config``, ``--root``/``-r`` and ``--dbpath``/``-b`` of a pacman command line."""
    found: dict[str, str] = {}
    names = {"--config": "config", "--root": "root", "-r": "root", "--dbpath": "dbpath",
             "-b": "dbpath"}  # fmt: skip
    items = list(argv[1:])
    for i, arg in enumerate(items):
        key, eq, value = arg.partition("=")
        if key in names and eq:
            found[names[key]] = value
        elif arg in names and i + 1 < len(items):
            found[names[arg]] = items[i + 1]
    return PacmanArgs(
        Path(found.get("config", "/etc/pacman.conf")),
        Path(found["root"]) if "root" in found else None,
        Path(found["dbpath"]) if "dbpath" in found else None,
    )


def parent_pacman() -> PacmanArgs | None:
    """The command line of the pacman that runs this process (a hook), if it is one."""
    try:
        raw = Path(f"/proc/{os.getppid()}/cmdline").read_bytes()
    except OSError:
        return None
    argv = [a.decode(errors="replace") for a in raw.split(b"\0") if a]
    if not argv or not os.path.basename(argv[0]).startswith("pacman"):
        return None
    return pacman_args(argv)


def conf_for(args: PacmanArgs) -> PacmanConf:
    """The configuration pacman uses with these arguments (``--root`` moves the default
    database under it, as ``RootDir`` does; ``--dbpath`` wins over both)."""
    conf = read_pacman_conf(args.config)
    if args.root is not None:
        conf = replace(conf, root=args.root, dbpath=args.root / "var/lib/pacman")
    if args.dbpath is not None:
        conf = replace(conf, dbpath=args.dbpath)
    return conf
