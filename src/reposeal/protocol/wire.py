"""JSON from another machine, read one way on both sides: bytes that are not UTF-8 JSON, or
nest deeper than the parser goes, are a WireFormatError (a typed error, never the parser's
own exception escaping a service's handler or the enclave's loop)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from reposeal.errors import InputError

if TYPE_CHECKING:
    from aiohttp import web


class WireFormatError(InputError):
    """An answer or request body that is not JSON of the expected shape."""


def loads(data: bytes, what: str) -> Any:
    """The JSON value in ``data``; WireFormatError naming ``what`` otherwise."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise WireFormatError(f"{what}: not JSON") from None


def json_object(data: bytes, what: str) -> dict[str, Any]:
    doc = loads(data, what)
    if not isinstance(doc, dict):
        raise WireFormatError(f"{what}: not a JSON object")
    return doc


def count(doc: dict[str, Any], key: str, what: str) -> int:
    """A field that is a count (a whole number, not negative)."""
    value = doc.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise WireFormatError(f"{what}: {key} is not a count")
    return value


async def json_body(request: web.Request) -> Any:
    """A request's JSON body; a 400 that says so when it is not JSON."""
    from aiohttp import web

    try:
        return loads(await request.read(), f"{request.method} {request.path}")
    except WireFormatError as exc:
        raise web.HTTPBadRequest(text=exc.message) from None
