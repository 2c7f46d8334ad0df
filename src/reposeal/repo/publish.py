"""Atomic publication: a new database and its signature appear together, or not at all.

Every published state is an immutable generation directory; one ``rename(2)`` of the
``NAME.current`` symlink switches db, files and both signatures at once. A crash at any point
leaves the previous generation in place, and pacman, web servers and rsync all follow the
symlinks. A database written by repo-add (plain files) is adopted into a generation first,
one content-preserving step at a time, so even that conversion is never inconsistent.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from reposeal.fsio import replace_with_symlink
from reposeal.repo.paths import RepoPaths

KEEP_GENERATIONS = 2  # the current one and the one before (repo-add keeps .old likewise)
_PARTS = ("db", "files")
# what sits beside each archive: its signature, and the offline proof that it was logged
# and witnessed (C2SP tlog-proof)
SIDECARS = (".sig", ".tlog-proof")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def generation_numbers(paths: RepoPaths) -> list[int]:
    if not paths.generations.is_dir():
        return []
    return sorted(int(p.name) for p in paths.generations.iterdir() if p.name.isdigit())


def _make_generation(paths: RepoPaths, fill: Callable[[Path], None]) -> str:
    """Create the next generation directory, filled by ``fill(tmpdir)`` and fsynced."""
    paths.generations.mkdir(exist_ok=True)
    tmp = paths.generations / f".tmp-{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        fill(tmp)
        _fsync_dir(tmp)
        numbers = generation_numbers(paths)
        gen = f"{(numbers[-1] + 1) if numbers else 1:06d}"
        os.rename(tmp, paths.generations / gen)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(paths.generations)
    return gen


def _newest_mtime(paths: RepoPaths) -> int:
    newest = 0
    for part in _PARTS:
        with contextlib.suppress(OSError):
            newest = max(newest, int(paths.archive(part).stat().st_mtime))
    return newest


def _switch(paths: RepoPaths, gen: str) -> None:
    replace_with_symlink(paths.current, f"{paths.generations.name}/{gen}")
    _fsync_dir(paths.directory)


def _top_level_names(paths: RepoPaths) -> list[str]:
    names = []
    for part in _PARTS:
        archive = paths.archive_name(part)
        names += [archive, archive + ".sig"]
    return names


def _adopt_plain_files(paths: RepoPaths) -> None:
    """Move a repo-add style database (plain files) into a generation, consistently."""
    plain = [
        n
        for n in _top_level_names(paths)
        if (paths.directory / n).is_file() and not (paths.directory / n).is_symlink()
    ]
    if not plain:
        return
    # the new generation holds everything there is, plain or behind a link: a mixed folder
    # (a plain signature beside a linked database) must not lose the linked part
    present = [n for n in _top_level_names(paths) if (paths.directory / n).exists()]

    def fill(tmp: Path) -> None:
        for name in present:
            source = (paths.directory / name).resolve()  # the bytes, not a link to them
            try:
                os.link(source, tmp / name)
            except OSError:
                shutil.copy2(source, tmp / name)

    gen = _make_generation(paths, fill)
    _switch(paths, gen)
    # each step swaps a file for a link to identical bytes, so every state is consistent
    for name in _top_level_names(paths):
        link = paths.directory / name
        if name in plain or link.is_symlink() or not link.exists():
            replace_with_symlink(link, f"{paths.current.name}/{name}")
    _fsync_dir(paths.directory)


def publish(
    paths: RepoPaths,
    files: dict[str, bytes],
    keep: int = KEEP_GENERATIONS,
    later: Callable[[], dict[str, bytes]] | None = None,
) -> str:
    """Publish a new generation holding ``files``: {archive name or archive.sig: bytes},
    keeping the ``keep`` newest generations on disk. ``later`` gives more files once
    ``files`` are written (signatures still being made meanwhile); if it raises, nothing is
    published.

    Returns the generation's name. Callers hold the database lock.
    """
    _adopt_plain_files(paths)
    previous = os.readlink(paths.current) if paths.current.is_symlink() else None

    # pacman (and curl) skip a download whose mtime is not newer than the copy they hold, at
    # one-second resolution: every generation must be strictly newer than the last one.
    stamp = max(int(time.time()), _newest_mtime(paths) + 1)

    def fill(tmp: Path) -> None:
        for name, data in files.items():
            _write_file(tmp / name, data)
            os.utime(tmp / name, (stamp, stamp))
        for name, data in (later() if later is not None else {}).items():
            files[name] = data  # (the links below are made for these too)
            _write_file(tmp / name, data)
            os.utime(tmp / name, (stamp, stamp))

    gen = _make_generation(paths, fill)
    # links are created before the switch; until then they resolve in the old generation
    for part in _PARTS:
        archive = paths.archive_name(part)
        replace_with_symlink(paths.directory / archive, f"{paths.current.name}/{archive}")
        for side in SIDECARS:
            if archive + side in files:
                name = archive + side
                replace_with_symlink(paths.directory / name, f"{paths.current.name}/{name}")
    _switch(paths, gen)
    for part in _PARTS:
        archive = paths.archive_name(part)
        replace_with_symlink(paths.link(part), archive)
        for side in SIDECARS:
            short = paths.link(part).with_name(paths.link(part).name + side)
            if archive + side in files:
                replace_with_symlink(short, archive + side)
            else:  # e.g. an unsigned generation: drop the (now dangling) links
                for stale in (paths.directory / (archive + side), short):
                    with contextlib.suppress(FileNotFoundError):
                        stale.unlink()
    _point_old(paths, previous)
    _fsync_dir(paths.directory)
    _prune(paths, gen, keep)
    return gen


def _point_old(paths: RepoPaths, previous: str | None) -> None:
    """NAME.db.tar.gz.old (and the files database's, and their .sig) is always the previous
    generation's, whoever wrote last (repo-add leaves its .old the same way)."""
    if previous is None:
        return
    for part in _PARTS:
        archive = paths.archive_name(part)
        for side in ("", ".sig"):
            target = f"{previous}/{archive}{side}"
            link = paths.directory / f"{archive}.old{side}"
            if (paths.directory / target).exists():
                replace_with_symlink(link, target)
            elif link.is_symlink():
                link.unlink()


def _prune(paths: RepoPaths, current: str, keep: int) -> None:
    kept = {f"{n:06d}" for n in generation_numbers(paths)[-keep:]} | {current}
    for p in paths.generations.iterdir():
        if p.name not in kept:
            shutil.rmtree(p, ignore_errors=True)
