"""A throw-away pacman setup (own root, databases, cache and keyring) for trying a repo.

Used by the demo and the end-to-end tests: everything lives under one folder, nothing
touches the host's pacman state.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ScratchPacman:
    base: Path
    repos: dict[str, Path]  # repo name -> folder served as file://

    @property
    def conf(self) -> Path:
        return self.base / "pacman.conf"

    @property
    def root(self) -> Path:
        return self.base / "root"

    @property
    def gpgdir(self) -> Path:
        return self.base / "gnupg"

    def write_conf(self, siglevel: str = "Required DatabaseRequired") -> Path:
        for d in ("root", "db", "cache", "hooks"):
            (self.base / d).mkdir(parents=True, exist_ok=True)
        lines = [
            "[options]",
            f"RootDir = {self.root}",
            f"DBPath = {self.base / 'db'}",
            f"CacheDir = {self.base / 'cache'}",
            f"GPGDir = {self.gpgdir}",
            f"HookDir = {self.base / 'hooks'}",
            f"LogFile = {self.base / 'pacman.log'}",
            "Architecture = auto",
            f"SigLevel = {siglevel}",
            "LocalFileSigLevel = Optional",
        ]
        for name, folder in self.repos.items():
            lines += ["", f"[{name}]", f"Server = file://{folder}"]
        self.conf.write_text("\n".join(lines) + "\n")
        return self.conf

    def trust(self, public_key: Path, fingerprint: str, *, init: bool = True) -> None:
        """A keyring (pacman-key) that trusts this key (and, with ``init=False``, the ones
        trusted before)."""
        steps = [["--add", str(public_key)], ["--lsign-key", fingerprint]]
        for args in ([["--init"]] if init else []) + steps:
            subprocess.run(
                ["pacman-key", "--gpgdir", str(self.gpgdir), *args], check=True, capture_output=True
            )
        subprocess.run(
            ["gpgconf", "--homedir", str(self.gpgdir), "--kill", "all"], capture_output=True
        )

    def command(self, *args: str) -> list[str]:
        return ["pacman", "--config", str(self.conf), "--noconfirm", *args]
