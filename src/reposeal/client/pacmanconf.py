"""The repositories a pacman.conf names, with the first Server of each (Include files
followed), as `reposeal verify --pacman-conf` and `reposeal pacman` need them."""

from __future__ import annotations

import os
from dataclasses import dataclass
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
            if section == "options":
                options[key] = value
            elif section is not None and key == "Server":
                servers[section].append(value)
            elif section is not None and key == "Include":
                take(_lines(Path(value), depth + 1), depth + 1)

    take(_lines(path), 0)
    arch = options.get("Architecture", "auto").split()[0]
    if arch == "auto":
        arch = os.uname().machine
    repos = [
        Repo(name, servers[name][0].replace("$repo", name).replace("$arch", arch))
        for name in order
        if servers[name]
    ]
    return PacmanConf(Path(options.get("DBPath", "/var/lib/pacman/")), arch, repos)
