"""The ``desc`` and ``files`` entries of sync and files databases. Pure, no I/O.

Field names, order and values are exactly what repo-add writes, so a database entry made by
reposeal is byte-identical to repo-add's for the same package.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from reposeal.alpm.limits import DEFAULT_LIMITS
from reposeal.alpm.pkginfo import PkgInfo
from reposeal.errors import InvalidDatabaseError


@dataclass(frozen=True, slots=True)
class PackageFacts:
    """What the database says about one package file: its metadata plus file facts."""

    info: PkgInfo
    filename: str
    csize: int
    md5: str
    sha256: str
    pgpsig: str = ""  # base64 detached signature, only with --include-sigs


def _field(out: list[str], name: str, values: Iterable[str]) -> None:
    vals = [v for v in values if v]
    if vals:
        out.append(f"%{name}%\n" + "\n".join(vals) + "\n\n")


def render_desc(f: PackageFacts) -> bytes:
    """Render a ``desc`` entry as repo-add 6 does."""
    i = f.info
    out: list[str] = []
    _field(out, "FILENAME", [f.filename])
    _field(out, "NAME", [i.name])
    _field(out, "BASE", [i.base])
    _field(out, "VERSION", [i.version])
    _field(out, "DESC", [i.desc])
    _field(out, "GROUPS", i.groups)
    _field(out, "CSIZE", [str(f.csize)])
    _field(out, "ISIZE", [str(i.size)] if i.size is not None else [])
    _field(out, "MD5SUM", [f.md5])
    _field(out, "SHA256SUM", [f.sha256])
    _field(out, "PGPSIG", [f.pgpsig])
    _field(out, "URL", [i.url])
    _field(out, "LICENSE", i.licenses)
    _field(out, "ARCH", [i.arch])
    _field(out, "BUILDDATE", [str(i.builddate)] if i.builddate is not None else [])
    _field(out, "PACKAGER", [i.packager])
    _field(out, "REPLACES", i.replaces)
    _field(out, "CONFLICTS", i.conflicts)
    _field(out, "PROVIDES", i.provides)
    _field(out, "DEPENDS", i.depends)
    _field(out, "OPTDEPENDS", i.optdepends)
    _field(out, "MAKEDEPENDS", i.makedepends)
    _field(out, "CHECKDEPENDS", i.checkdepends)
    return "".join(out).encode("utf-8")


def render_files(paths: Iterable[str]) -> bytes:
    """Render a ``files`` entry: ``%FILES%`` then paths in C-locale order, one per line."""
    return ("%FILES%\n" + "".join(p + "\n" for p in paths)).encode("utf-8")


def sorted_paths(paths: Iterable[str]) -> list[str]:
    """Order paths as ``LC_ALL=C sort -u`` does (code point order equals UTF-8 byte order)."""
    return sorted(set(paths))


def parse_desc(raw: bytes, where: str) -> dict[str, list[str]]:
    """Parse a ``desc`` (or ``files``) entry into {FIELD: [values]}; strict on structure."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidDatabaseError(f"{where} is not valid UTF-8") from None
    fields: dict[str, list[str]] = {}
    current: list[str] | None = None
    longest = max((len(line) for line in raw.split(b"\n")), default=0)
    if longest >= DEFAULT_LIMITS.max_desc_line_bytes:
        raise InvalidDatabaseError(
            f"{where}: a line of {longest} bytes; pacman reads lines of less than "
            f"{DEFAULT_LIMITS.max_desc_line_bytes} bytes and would refuse the database"
        )
    for line in text.split("\n"):
        if current is None:
            if not line:
                continue
            if len(line) < 3 or not (line.startswith("%") and line.endswith("%")):
                raise InvalidDatabaseError(f"{where}: expected a %FIELD% header, got {line[:60]!r}")
            name = line[1:-1]
            if name in fields:
                raise InvalidDatabaseError(f"{where}: field %{name}% appears twice")
            current = fields[name] = []
        elif line:
            current.append(line)
        else:
            current = None
    return fields


def single(fields: dict[str, list[str]], name: str, where: str) -> str:
    """The one value of a single-valued field, or a clear error."""
    values = fields.get(name)
    if not values or len(values) != 1:
        raise InvalidDatabaseError(f"{where}: needs exactly one %{name}% value")
    return values[0]
