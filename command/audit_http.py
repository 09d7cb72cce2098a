"""The audit log from a request's point of view: who (the principal), from where
(the client address), and the mark that says the handler recorded it itself.

A handler that changes something calls :func:`audit_request` inside its
transaction; ``command/guard.py``'s middleware records every state-changing
request the handler did not (refusals, errors), after the fact.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp import web

from command import audit
from command.client_address import client_address, networks_of, peer_in
from command.feed_protocol import Principal
from command.keys import SETTINGS

#: Set once the handler has written the request's audit row.
AUDITED = web.RequestKey("audited", bool)
#: Why a handler refused with a response it built itself (not an ApiError),
#: for the audit row the middleware writes after it.
REFUSAL = web.RequestKey("refusal", str)


def client_of(request: web.Request) -> str:
    """The client's address: X-Forwarded-For only when a trusted proxy sent it."""
    proxies = networks_of(request.app[SETTINGS].trusted_proxies)
    return client_address(request.remote, request.headers.getall("X-Forwarded-For", []), proxies)


def came_over_https(request: web.Request) -> bool:
    """HTTPS to us, or to a trusted proxy that ended TLS and says so in
    ``X-Forwarded-Proto`` (from anyone else the header is ignored)."""
    if request.secure:
        return True
    if not peer_in(request.remote, networks_of(request.app[SETTINGS].trusted_proxies)):
        return False
    # The client-facing proxy's value comes first when several proxies appended theirs.
    headers = request.headers.getall("X-Forwarded-Proto", [])
    values = [v.strip().lower() for h in headers for v in h.split(",")]
    return bool(values) and values[0] == "https"


async def audit_request(
    request: web.Request,
    conn: asyncpg.Connection,
    principal: Principal | None,
    action: str,
    *,
    outcome: str = "ok",
    target: str | None = None,
    status: int = 200,
    detail: dict[str, Any] | None = None,
    actor: str | None = None,
) -> None:
    """Record this request's action on ``conn`` (in its transaction, if any) and
    mark the request recorded. ``actor`` overrides the principal's name (a
    failed login names what was typed)."""
    await audit.record(
        conn,
        action=action,
        outcome=outcome,
        actor=actor if actor is not None else (principal.username if principal else None),
        role=principal.role if principal else None,
        address=client_of(request),
        target=target,
        status=status,
        detail=detail,
    )
    request[AUDITED] = True
