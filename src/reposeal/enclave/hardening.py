"""What the enclave's safety rests on besides its own files, checked by `enclave selfcheck`:

- the running `enclave run` has the unit's sandboxing in force: no new privileges, no
  capabilities, a seccomp filter (systemd's ``SystemCallArchitectures=``/``NoNewPrivileges=``
  give one);
- nothing on the machine listens for connections in a process of the enclave's user;
- the key file (``soft:``) is not readable by others; an HSM's token is present (the key
  check signs with it);
- the Python and the bubblewrap it runs from are those the signed manifest names.

The readers below take the text of ``/proc`` files (pure); :func:`observe` reads them.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import shutil
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path

TCP_LISTEN = "0A"


def status_fields(text: str) -> dict[str, str]:
    """``/proc/PID/status`` as a dict."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


def sandbox_problems(status: dict[str, str]) -> list[str]:
    """What a process's status says is missing of the unit's sandbox."""
    problems = []
    if status.get("NoNewPrivs") != "1":
        problems.append("it may gain privileges (NoNewPrivileges= is not in force)")
    if status.get("CapEff", "0").strip("0"):
        problems.append(f"it holds capabilities (CapEff {status.get('CapEff')})")
    if status.get("Seccomp", "0") == "0":
        problems.append("no seccomp filter (SystemCallArchitectures=/NoNewPrivileges= absent)")
    return problems


def listening_inodes(proc_net: str) -> set[str]:
    """Socket inodes in the LISTEN state in a ``/proc/net/tcp`` or ``tcp6`` table."""
    out = set()
    for line in proc_net.splitlines()[1:]:
        cols = line.split()
        if len(cols) > 9 and cols[3] == TCP_LISTEN:
            out.add(cols[9])
    return out


def key_file_problems(mode: int) -> list[str]:
    if mode & (stat.S_IROTH | stat.S_IWOTH | stat.S_IWGRP):
        return [f"the key file is readable or writable by others (mode {stat.S_IMODE(mode):o})"]
    return []


def runtime_hashes() -> dict[str, str]:
    """The sha256 of the Python this runs on and of bubblewrap, as the manifest records."""
    out = {}
    for name, path in (("python", Path(sys.executable).resolve()),
                       ("bwrap", Path(shutil.which("bwrap") or "/usr/bin/bwrap"))):  # fmt: skip
        if path.is_file():
            out[name] = f"{path}:{hashlib.sha256(path.read_bytes()).hexdigest()}"
    return out


@dataclass
class Observed:
    """The enclave processes found, and what each lacks; listening sockets they hold."""

    processes: dict[int, list[str]] = field(default_factory=dict)
    listening: dict[int, int] = field(default_factory=dict)  # pid -> listening sockets


def _enclave_pids(home: Path) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [a.decode(errors="replace") for a in argv]
        if "enclave" in words and "run" in words and _home_of(words) == home.resolve():
            pids.append(int(entry.name))
    return pids


def _home_of(words: list[str]) -> Path | None:
    """The home an `enclave run` command line names (itself, or in its --config file)."""
    import tomllib

    for flag, value in itertools.pairwise(words):
        if flag == "--home":
            return Path(value).resolve()
    for flag, value in itertools.pairwise(words):
        if flag == "--config":
            try:
                home = tomllib.loads(Path(value).read_text()).get("home")
            except (OSError, ValueError):
                return None
            return Path(str(home)).resolve() if home else None
    return None


def observe(home: Path) -> Observed:
    """Each running `enclave run` of ``home``: its sandbox and any socket it listens on."""
    seen = Observed()
    listen = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            listen |= listening_inodes(Path(table).read_text())
    for pid in _enclave_pids(home):
        try:
            status = status_fields(Path(f"/proc/{pid}/status").read_text())
        except OSError:
            continue
        seen.processes[pid] = sandbox_problems(status)
        count = 0
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in listen:
                    count += 1
        except OSError:
            pass
        seen.listening[pid] = count
    return seen
