"""Builders for hostile archives (tarfile writes whatever we ask, which is the point)."""

from __future__ import annotations

import io
import tarfile

from reposeal.alpm import compression
from reposeal.alpm.synthetic import pkginfo_text


def tar_bytes(
    members: list[tuple[tarfile.TarInfo, bytes | None]], fmt: int = tarfile.GNU_FORMAT
) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            t.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def member(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info, None


def package(
    *extra: tuple[tarfile.TarInfo, bytes | None],
    pkginfo: bytes | None = None,
    kind: str = compression.PLAIN,
    fmt: int = tarfile.GNU_FORMAT,
) -> bytes:
    members: list[tuple[tarfile.TarInfo, bytes | None]] = []
    if pkginfo != b"":
        members.append(file(".PKGINFO", pkginfo or pkginfo_text("evil", "1.0-1")))
    members += extra
    return compression.compress([tar_bytes(members, fmt)], kind)
