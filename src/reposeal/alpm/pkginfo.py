"""The ``.PKGINFO`` metadata of a package: parsing and validation. Pure, no I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from reposeal.alpm.limits import DEFAULT_LIMITS
from reposeal.alpm.names import check_arch, check_name, check_version
from reposeal.errors import InvalidPackageError

SINGLE_FIELDS = frozenset(
    {"pkgname", "pkgbase", "pkgver", "pkgdesc", "url", "builddate", "packager", "size", "arch"}
)
LIST_FIELDS = frozenset(
    {
        "license",
        "replaces",
        "group",
        "conflict",
        "provides",
        "backup",
        "depend",
        "optdepend",
        "makedepend",
        "checkdepend",
        "xdata",
    }
)
_WS = re.compile(r"[ \t\n\v\f\r]+")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class PkgInfo:
    """Every field of a .PKGINFO, multi-valued ones as tuples, in file order."""

    name: str
    version: str
    arch: str
    base: str = ""
    desc: str = ""
    url: str = ""
    builddate: int | None = None  # absent or empty: repo-add writes no %BUILDDATE%
    packager: str = ""
    size: int | None = None  # absent or empty: no %ISIZE%
    licenses: tuple[str, ...] = ()
    replaces: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    conflicts: tuple[str, ...] = ()
    provides: tuple[str, ...] = ()
    backup: tuple[str, ...] = ()
    depends: tuple[str, ...] = ()
    optdepends: tuple[str, ...] = ()
    makedepends: tuple[str, ...] = ()
    checkdepends: tuple[str, ...] = ()
    xdata: tuple[str, ...] = ()
    unknown: tuple[tuple[str, str], ...] = field(default=())


_LIST_ATTR = {
    "license": "licenses",
    "replaces": "replaces",
    "group": "groups",
    "conflict": "conflicts",
    "provides": "provides",
    "backup": "backup",
    "depend": "depends",
    "optdepend": "optdepends",
    "makedepend": "makedepends",
    "checkdepend": "checkdepends",
    "xdata": "xdata",
}


def _number(key: str, value: str) -> int:
    if not value.isascii() or not value.isdigit() or len(value) > 19:
        raise InvalidPackageError(f".PKGINFO field {key!r} must be a number, got {value!r}")
    return int(value)


def _optional_number(key: str, value: str) -> int | None:
    return _number(key, value) if value else None


def parse_pkginfo(raw: bytes) -> PkgInfo:
    """Parse .PKGINFO bytes as repo-add reads them (``key = value``, whitespace folded)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidPackageError(f".PKGINFO is not valid UTF-8 (byte {exc.start})") from None
    singles: dict[str, str] = {}
    lists: dict[str, list[str]] = {k: [] for k in LIST_FIELDS}
    unknown: list[tuple[str, str]] = []
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip() or line.startswith("#"):
            continue
        if _CONTROL.search(line):
            raise InvalidPackageError(f".PKGINFO line {lineno} contains control characters")
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key or " " in key:
            raise InvalidPackageError(f".PKGINFO line {lineno} is not 'key = value': {line!r}")
        value = _WS.sub(" ", value).strip()
        if len(value.encode()) >= DEFAULT_LIMITS.max_desc_line_bytes:
            raise InvalidPackageError(
                f".PKGINFO field {key!r} is {len(value.encode())} bytes long; pacman reads "
                f"database lines of less than {DEFAULT_LIMITS.max_desc_line_bytes} bytes"
            )
        if key in SINGLE_FIELDS:
            if key in singles:
                raise InvalidPackageError(f".PKGINFO has field {key!r} twice")
            singles[key] = value
        elif key in LIST_FIELDS:
            if value:
                lists[key].append(value)
        else:
            unknown.append((key, value))
    for required in ("pkgname", "pkgver", "arch"):
        if not singles.get(required):
            raise InvalidPackageError(f".PKGINFO has no {required}")
    name = check_name(singles["pkgname"])
    base = singles.get("pkgbase", "")
    if base:
        check_name(base)
    return PkgInfo(
        name=name,
        version=check_version(singles["pkgver"]),
        arch=check_arch(singles["arch"]),
        base=base,
        desc=singles.get("pkgdesc", ""),
        url=singles.get("url", ""),
        builddate=_optional_number("builddate", singles.get("builddate", "")),
        packager=singles.get("packager", ""),
        size=_optional_number("size", singles.get("size", "")),
        unknown=tuple(unknown),
        **{attr: tuple(lists[key]) for key, attr in _LIST_ATTR.items()},
    )
