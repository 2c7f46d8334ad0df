"""Opening files that come from outside: regular files only, never blocking on a FIFO."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

from reposeal.errors import InputError, LimitExceededError


def open_regular(path: Path) -> BinaryIO:
    """Open ``path`` for reading if it is a regular file (symlinks to one are fine).

    A FIFO or device would block or never end; we refuse them before reading a byte.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise InputError("file not found", path=path) from None
    except IsADirectoryError:
        raise InputError("is a directory, not a file", path=path) from None
    except PermissionError:
        raise InputError("permission denied", path=path) from None
    except OSError as exc:
        raise InputError(f"cannot open: {exc.strerror}", path=path) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise InputError("not a regular file (FIFO, device or socket?)", path=path)
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def read_limited(path: Path, limit: int, what: str) -> bytes:
    """Read a whole regular file of at most ``limit`` bytes."""
    with open_regular(path) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise LimitExceededError(f"{what} is larger than {limit} bytes", path=path)
    return data
