"""Writing files so that readers see the old bytes or the new, never a mix."""

from __future__ import annotations

import ctypes
import os
from collections.abc import Mapping
from pathlib import Path


def _write_tmp(path: Path, data: bytes, fsync: bool) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def atomic_write(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Write to a temporary name beside ``path``, fsync (unless ``durable`` is False: a
    copy that can be made again), rename over it."""
    tmp = _write_tmp(path, data, durable)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _sync_filesystem(path: Path) -> None:
    """Make everything written on ``path``'s filesystem durable: one syncfs(2) costs about
    what one fsync does, however many files were written."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.syncfs(fd) != 0:
            raise OSError(ctypes.get_errno(), "syncfs failed", str(path))
    finally:
        os.close(fd)


def write_all(files: Mapping[Path, bytes], *, sync: Path | None = None) -> None:
    """Write several files, each atomically, all durable when this returns (one sync).
    ``sync``: a folder whose filesystem is synced even if ``files`` is empty (files
    written before with ``durable=False`` become durable too)."""
    for path, data in files.items():
        atomic_write(path, data, durable=False)
    if files or sync is not None:
        _sync_filesystem(sync if sync is not None else next(iter(files)).parent)


def replace_with_symlink(link: Path, target: str) -> None:
    """Atomically make ``link`` a symlink to ``target`` (whatever was there before)."""
    import contextlib
    import secrets

    if link.is_symlink() and os.readlink(link) == target:
        return
    tmp = link.with_name(f".{link.name}.{secrets.token_hex(4)}.tmp")
    os.symlink(target, tmp)
    try:
        os.replace(tmp, link)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
