"""Canonical JSON (RFC 8785), fast for the documents we write ourselves.

rfc8785 is exact but pure Python: 10,000 package records take a second. For values made of
strings, integers, booleans, None, lists and objects with ASCII keys, Python's own encoder
with sorted keys, no spaces and no ASCII escaping produces the same bytes (integers print
the same; strings escape the same characters, with lowercase hex); anything else goes to
rfc8785. A property test checks the two agree.
"""

from __future__ import annotations

import json
from typing import Any

import rfc8785

_SAFE_INT = 2**53


def _simple(value: Any) -> bool:
    if value is None or isinstance(value, (str, bool)):
        return True
    if isinstance(value, int):
        return -_SAFE_INT < value < _SAFE_INT
    if isinstance(value, list):
        return all(_simple(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and k.isascii() and _simple(v) for k, v in value.items())
    return False


def dumps(value: Any) -> bytes:
    if _simple(value):
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
            "utf-8"
        )
    return rfc8785.dumps(value)
