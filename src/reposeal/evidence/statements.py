"""in-toto Statement v1 documents, canonical JSON (RFC 8785), strictly parsed.

A statement is only accepted in its canonical form, so the bytes that were signed are the
bytes that are read; duplicate keys, floats, unknown fields and malformed values are refused.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, TypeVar

from reposeal import canonical
from reposeal.alpm.limits import MAX_STATEMENT_BYTES
from reposeal.alpm.names import check_name, check_version
from reposeal.errors import InputError, ReposealError

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREFIX = "https://reposeal.dev/"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")  # git SHA-1 or SHA-256 object id
_FPR = re.compile(r"[0-9A-F]{40}")


class StatementError(InputError):
    """A statement that is not well-formed or not canonical."""


def _str(doc: dict[str, Any], key: str, pattern: re.Pattern[str] | None = None) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or (pattern is not None and not pattern.fullmatch(value)):
        raise StatementError(f"field {key!r} is missing or malformed")
    return value


def _name(doc: dict[str, Any], key: str) -> str:
    try:
        return check_name(_str(doc, key))
    except ReposealError as exc:
        raise StatementError(f"field {key!r}: {exc.message}") from None


def _version(doc: dict[str, Any], key: str) -> str:
    try:
        return check_version(_str(doc, key))
    except ReposealError as exc:
        raise StatementError(f"field {key!r}: {exc.message}") from None


def _exact_keys(doc: dict[str, Any], keys: set[str], where: str) -> None:
    if set(doc) != keys:
        raise StatementError(f"{where} must have exactly the fields {sorted(keys)}")


@dataclass(frozen=True)
class Approval:
    """A maintainer approves building ``commit`` of ``pkgbase`` (its PKGBUILD's sha256)."""

    repo: str
    pkgbase: str
    commit: str
    pkgbuild_sha256: str
    author: str | None = None  # fingerprint of the change's author, if known

    kind = "approval"

    def subject(self) -> list[dict[str, Any]]:
        return [
            {
                "name": f"{self.pkgbase}/PKGBUILD",
                "digest": {"gitCommit": self.commit, "sha256": self.pkgbuild_sha256},
            }
        ]

    def predicate(self) -> dict[str, Any]:
        p: dict[str, Any] = {
            "repo": self.repo,
            "pkgbase": self.pkgbase,
            "commit": self.commit,
            "pkgbuild_sha256": self.pkgbuild_sha256,
        }
        if self.author is not None:
            p["author"] = self.author
        return p

    @classmethod
    def from_predicate(cls, p: dict[str, Any]) -> Approval:
        keys = {"repo", "pkgbase", "commit", "pkgbuild_sha256"} | ({"author"} & set(p))
        _exact_keys(p, keys, "approval")
        return cls(
            _name(p, "repo"),
            _name(p, "pkgbase"),
            _str(p, "commit", _COMMIT),
            _str(p, "pkgbuild_sha256", _HEX64),
            _str(p, "author", _FPR) if "author" in p else None,
        )


@dataclass(frozen=True)
class Build:
    """A builder attests: ``commit`` of ``pkgbase`` built into ``filename`` with ``sha256``."""

    pkgbase: str
    commit: str
    filename: str
    sha256: str
    buildinfo_sha256: str

    kind = "build"

    def subject(self) -> list[dict[str, Any]]:
        return [{"name": self.filename, "digest": {"sha256": self.sha256}}]

    def predicate(self) -> dict[str, Any]:
        return {
            "pkgbase": self.pkgbase,
            "commit": self.commit,
            "buildinfo_sha256": self.buildinfo_sha256,
        }

    @classmethod
    def from_parts(cls, subject: list[dict[str, Any]], p: dict[str, Any]) -> Build:
        _exact_keys(p, {"pkgbase", "commit", "buildinfo_sha256"}, "build")
        if len(subject) != 1:
            raise StatementError("a build statement has exactly one subject (the package)")
        s = subject[0]
        from reposeal.alpm.names import check_package_filename

        try:
            filename = check_package_filename(_str(s, "name"))
        except ReposealError as exc:
            raise StatementError(exc.message) from None
        digest = s.get("digest")
        if not isinstance(digest, dict) or set(digest) != {"sha256"}:
            raise StatementError("a build subject's digest is exactly {sha256}")
        return cls(
            _name(p, "pkgbase"),
            _str(p, "commit", _COMMIT),
            filename,
            _str(digest, "sha256", _HEX64),
            _str(p, "buildinfo_sha256", _HEX64),
        )


@dataclass(frozen=True)
class Removal:
    """Maintainers approve removing exact versions of packages from ``repo``. Naming the
    version matters: a removal approved for 1.0-1 cannot take out a 2.0-1 approved later,
    and the enclave uses each statement once per architecture."""

    repo: str
    packages: tuple[tuple[str, str], ...]  # (pkgname, version)

    kind = "removal"

    @property
    def pkgnames(self) -> tuple[str, ...]:
        return tuple(n for n, _ in self.packages)

    def subject(self) -> list[dict[str, Any]]:
        return [
            {"name": f"{self.repo}/{n}-{v}", "digest": {"sha256": "0" * 64}}
            for n, v in self.packages
        ]

    def predicate(self) -> dict[str, Any]:
        return {
            "repo": self.repo,
            "packages": [{"name": n, "version": v} for n, v in self.packages],
        }

    @classmethod
    def from_predicate(cls, p: dict[str, Any]) -> Removal:
        _exact_keys(p, {"repo", "packages"}, "removal")
        listed = p["packages"]
        if not isinstance(listed, list) or not listed:
            raise StatementError("a removal lists one or more packages")
        packages = []
        for item in listed:
            if not isinstance(item, dict):
                raise StatementError("a removal lists packages as {name, version}")
            _exact_keys(item, {"name", "version"}, "a removed package")
            packages.append((_name(item, "name"), _version(item, "version")))
        if len({n for n, _ in packages}) != len(packages):
            raise StatementError("a removal names each package once")
        return cls(_name(p, "repo"), tuple(packages))


@dataclass(frozen=True)
class Override:
    """Admins allow exactly one exception, once: a downgrade, or re-binding a version."""

    repo: str
    pkgname: str
    action: str  # "downgrade" or "rebind"
    from_version: str
    to_version: str
    sha256: str  # the exact file allowed in
    nonce: str

    kind = "override"

    def subject(self) -> list[dict[str, Any]]:
        return [{"name": self.pkgname, "digest": {"sha256": self.sha256}}]

    def predicate(self) -> dict[str, Any]:
        return {
            "repo": self.repo,
            "pkgname": self.pkgname,
            "action": self.action,
            "from": self.from_version,
            "to": self.to_version,
            "nonce": self.nonce,
        }

    @classmethod
    def from_parts(cls, subject: list[dict[str, Any]], p: dict[str, Any]) -> Override:
        _exact_keys(p, {"repo", "pkgname", "action", "from", "to", "nonce"}, "override")
        if p.get("action") not in ("downgrade", "rebind"):
            raise StatementError("override action must be downgrade or rebind")
        if len(subject) != 1 or not isinstance(subject[0].get("digest"), dict):
            raise StatementError("an override has exactly one subject")
        nonce = _str(p, "nonce")
        if not 8 <= len(nonce) <= 128:
            raise StatementError("override nonce must have 8 to 128 characters")
        return cls(
            _name(p, "repo"),
            _name(p, "pkgname"),
            p["action"],
            _version(p, "from"),
            _version(p, "to"),
            _str(subject[0]["digest"], "sha256", _HEX64),
            nonce,
        )


@dataclass(frozen=True)
class Withdrawal:
    """A maintainer withdraws an approved source before it is published: the repo machine
    drops it (dropping is conservative, so one maintainer's word is enough)."""

    repo: str
    pkgbase: str
    commit: str

    kind = "withdrawal"

    def subject(self) -> list[dict[str, Any]]:
        return [{"name": f"{self.pkgbase}/PKGBUILD", "digest": {"gitCommit": self.commit}}]

    def predicate(self) -> dict[str, Any]:
        return {"repo": self.repo, "pkgbase": self.pkgbase, "commit": self.commit}

    @classmethod
    def from_predicate(cls, p: dict[str, Any]) -> Withdrawal:
        _exact_keys(p, {"repo", "pkgbase", "commit"}, "withdrawal")
        return cls(_name(p, "repo"), _name(p, "pkgbase"), _str(p, "commit", _COMMIT))


@dataclass(frozen=True)
class Adoption:
    """Admins take an existing repository's packages as the enclave's starting point for
    ``repo``/``arch``: every file by name and sha256 (the in-toto subjects), and optionally
    the sha256 of a keyring (OpenPGP certificates) whose packager signature each file must
    carry. Signed by the policy's admin threshold; usable once, on a repository the enclave
    has never signed."""

    repo: str
    arch: str
    files: tuple[tuple[str, str], ...]  # (package file name, sha256), sorted by name
    keyring_sha256: str | None = None

    kind = "adoption"

    def subject(self) -> list[dict[str, Any]]:
        return [{"name": f, "digest": {"sha256": d}} for f, d in self.files]

    def predicate(self) -> dict[str, Any]:
        return {"repo": self.repo, "arch": self.arch, "keyring_sha256": self.keyring_sha256}

    @classmethod
    def from_parts(cls, subject: list[dict[str, Any]], p: dict[str, Any]) -> Adoption:
        from reposeal.alpm.names import check_arch, check_package_filename

        _exact_keys(p, {"repo", "arch", "keyring_sha256"}, "adoption")
        files = []
        for s in subject:
            _exact_keys(s, {"name", "digest"}, "an adopted file")
            digest = s["digest"]
            if not isinstance(digest, dict) or set(digest) != {"sha256"}:
                raise StatementError("an adopted file's digest is exactly {sha256}")
            try:
                files.append(
                    (check_package_filename(_str(s, "name")), _str(digest, "sha256", _HEX64))
                )
            except ReposealError as exc:
                raise StatementError(exc.message) from None
        if [f for f, _ in files] != sorted({f for f, _ in files}):
            raise StatementError("an adoption lists each file once, sorted by name")
        keyring = p["keyring_sha256"]
        if keyring is not None:
            keyring = _str(p, "keyring_sha256", _HEX64)
        try:
            arch = check_arch(_str(p, "arch"))
        except ReposealError as exc:
            raise StatementError(f"field 'arch': {exc.message}") from None
        return cls(_name(p, "repo"), arch, tuple(files), keyring)


Statement = Approval | Build | Removal | Override | Withdrawal | Adoption

# whose keys sign each kind of statement (the policy's keyring of that role)
ROLE_OF = {
    "approval": "maintainers",
    "removal": "maintainers",
    "withdrawal": "maintainers",
    "build": "builders",
    "override": "admins",
    "adoption": "admins",
}


_Kind = TypeVar("_Kind", Approval, Build, Removal, Override, Withdrawal, Adoption)


def of_kind(stmt: Statement, kind: type[_Kind], what: str = "statement") -> _Kind:
    """``stmt`` as the one kind the caller reads it as; a StatementError (never an assert,
    which ``python -O`` drops) when it is another."""
    if not isinstance(stmt, kind):
        raise StatementError(
            f"expected a {kind.__name__.lower()} {what}, got a {stmt.kind} statement"
        )
    return stmt


def to_bytes(stmt: Statement) -> bytes:
    """The canonical (RFC 8785) bytes that are signed and stored."""
    doc: dict[str, Any] = {
        "_type": STATEMENT_TYPE,
        "subject": stmt.subject(),
        "predicateType": f"{PREFIX}{stmt.kind}/v1",
        "predicate": stmt.predicate(),
    }
    return canonical.dumps(doc)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise StatementError(f"duplicate JSON key {k!r}")
        out[k] = v
    return out


def _no_floats(text: str) -> Any:
    raise StatementError("numbers with fractions or exponents are not allowed")


def load_json(raw: bytes, what: str = "statement") -> dict[str, Any]:
    """Strict JSON: size-limited, UTF-8, no duplicate keys, no floats, canonical bytes."""
    if len(raw) > MAX_STATEMENT_BYTES:
        raise StatementError(f"{what} is larger than {MAX_STATEMENT_BYTES} bytes")
    try:
        doc = json.loads(
            raw.decode("utf-8"),
            object_pairs_hook=_no_duplicates,
            parse_float=_no_floats,
            parse_constant=_no_floats,
        )
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise StatementError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise StatementError(f"{what} must be a JSON object")
    if canonical.dumps(doc) != raw:
        raise StatementError(f"{what} is not in canonical form (RFC 8785)")
    return doc


def from_bytes(raw: bytes) -> Statement:
    doc = load_json(raw)
    _exact_keys(doc, {"_type", "subject", "predicateType", "predicate"}, "statement")
    if doc["_type"] != STATEMENT_TYPE:
        raise StatementError(f"not an in-toto Statement v1 ({doc['_type']!r})")
    subject, predicate, ptype = doc["subject"], doc["predicate"], doc["predicateType"]
    if (
        not isinstance(subject, list)
        or not subject
        or not all(isinstance(s, dict) for s in subject)
    ):
        raise StatementError("subject must be a non-empty list of objects")
    if not isinstance(predicate, dict):
        raise StatementError("predicate must be an object")
    stmt: Statement
    if ptype == f"{PREFIX}approval/v1":
        stmt = Approval.from_predicate(predicate)
    elif ptype == f"{PREFIX}build/v1":
        stmt = Build.from_parts(subject, predicate)
    elif ptype == f"{PREFIX}removal/v1":
        stmt = Removal.from_predicate(predicate)
    elif ptype == f"{PREFIX}override/v1":
        stmt = Override.from_parts(subject, predicate)
    elif ptype == f"{PREFIX}withdrawal/v1":
        stmt = Withdrawal.from_predicate(predicate)
    elif ptype == f"{PREFIX}adoption/v1":
        stmt = Adoption.from_parts(subject, predicate)
    else:
        raise StatementError(f"unknown or unsupported predicateType {ptype!r}")
    if to_bytes(stmt) != raw:
        raise StatementError("statement subject does not match its predicate")
    return stmt
