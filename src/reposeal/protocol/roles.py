"""Who may call an endpoint: the role in the caller's verified client certificate (both
HTTPS services check it the same way)."""

from __future__ import annotations

from aiohttp import web

from reposeal.tls import role_of


def require_role(request: web.Request, *allowed: str) -> None:
    role = role_of(request.transport.get_extra_info("peercert") if request.transport else None)
    if role not in allowed:
        raise web.HTTPForbidden(text=f"role {role!r} may not call {request.path}")
