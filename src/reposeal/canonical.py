"""Canonical JSON (RFC 8785), fast for the documents we write ourselves.

rfc8785 is exact but pure Python: 10,000 package records take a second. For values made of
strings, integers, booleans, None, lists and objects with ASCII keys, Python's own encoder
with sorted keys, no spaces and no ASCII escaping produces the same bytes (integers print
the same; strings escape the same characters, with lowercase hex); anything else goes to
rfc8785. A property test checks the two agree.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import rfc8785

from reposeal.errors import InputError

_SAFE_INT = 2**53


def _simple(value: Any) -> bool:
    """Is ``value`` made only of what the C encoder writes canonically? (Iterative, exact
    types: a subclass goes the slow, exact way.)"""
    stack = [value]
    while stack:
        v = stack.pop()
        t = type(v)
        if t is str or v is None or t is bool:
            continue
        if t is int:
            if not -_SAFE_INT < v < _SAFE_INT:
                return False
        elif t is list:
            stack.extend(v)
        elif t is dict:
            for k in v:
                if type(k) is not str or not k.isascii():
                    return False
            stack.extend(v.values())
        else:
            return False
    return True


def plain(value: object) -> object:
    """A record's field as JSON holds it: a tuple as a list, a mapping as an object (its
    tuple values as lists); the typed records' ``to_json`` write their fields with it."""
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Mapping):
        return {k: list(v) if isinstance(v, tuple) else v for k, v in value.items()}
    return value


class CanonicalError(InputError):
    """A value that has no canonical JSON form (RFC 8785 allows integers within +-2^53)."""


def dumps(value: Any) -> bytes:
    if _simple(value):
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
            "utf-8"
        )
    try:
        return rfc8785.dumps(value)
    except rfc8785.IntegerDomainError as exc:
        raise CanonicalError(
            f"{exc}: canonical JSON (RFC 8785) holds integers of at most 2^53 - 1; "
            "write larger numbers as strings"
        ) from None
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise CanonicalError(f"no canonical JSON form: {exc}") from None
