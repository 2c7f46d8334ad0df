"""A consistent copy of a machine's state folder while its service runs.

The repo machine (``repo serve --dir``: intake, queue and blobs, cycles, its copy of the
log; and the mirror) and the source machine (``source serve --dir``: proposals, approvals,
jobs, reports; and the PKGBUILD git repositories) keep their state in SQLite databases and
in files that are written once under their hash and never changed. So a backup copies each
database with SQLite's online backup (a consistent snapshot, even mid-write) and every
other file as it is, links as links; it is checked (``PRAGMA integrity_check``) before it
is called done. Restoring is copying it back with the service stopped.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from reposeal.errors import InputError

SKIP_SUFFIXES = ("-wal", "-shm", "-journal")  # parts of a live database, not files


@dataclass
class BackupReport:
    databases: list[str] = field(default_factory=list)
    files: int = 0
    links: int = 0
    bytes: int = 0


def _is_sqlite(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(16) == b"SQLite format 3\x00"
    except OSError:
        return False


def _copy_database(source: Path, target: Path) -> None:
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
        ok = dst.execute("PRAGMA integrity_check").fetchone()
        if not ok or ok[0] != "ok":
            raise InputError(f"the copy of {source} does not pass SQLite's integrity check")
        dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
    finally:
        dst.close()
        src.close()


def backup(folder: Path, target: Path, progress: Callable[[str], None]) -> BackupReport:
    """Copy ``folder`` into the new folder ``target`` (which must not exist)."""
    if not folder.is_dir():
        raise InputError("is not a folder", path=folder)
    if target.exists():
        raise InputError("exists already: back up into a new folder", path=target)
    partial = target.with_name(f".{target.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    report = BackupReport()
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        into = partial / here.relative_to(folder)
        into.mkdir(parents=True, exist_ok=True)
        dirnames[:] = [d for d in dirnames if not d.startswith(".tmp")]  # half-written
        for name in [*dirnames, *filenames]:
            path = here / name
            if path.is_symlink():
                os.symlink(os.readlink(path), into / name)
                report.links += 1
                if name in dirnames:
                    dirnames.remove(name)  # a link to a folder is kept as a link
        for name in filenames:
            path = here / name
            if path.is_symlink() or name.endswith(SKIP_SUFFIXES) or name.startswith(".tmp"):
                continue
            if _is_sqlite(path):
                _copy_database(path, into / name)
                report.databases.append(str(path.relative_to(folder)))
                progress(f"copied database {path.relative_to(folder)}")
            else:
                shutil.copy2(path, into / name)
                report.files += 1
            report.bytes += (into / name).stat().st_size
    os.replace(partial, target)
    return report
