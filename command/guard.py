"""The HTTP side's security wiring: the route table enforced, every change
audited, security headers on every response, the OpenAPI document, and the
housekeeping and production checks that go with them.

Installed by :func:`install` (``command/app.py``); the cross-site check sits
in ``command/web.py``'s auth middleware, which knows whether the cookie or a
bearer token authenticated the request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from importlib import metadata

import asyncpg
from aiohttp import web

from command import audit, db_roles, login_limit
from command.api_routes import Route, lookup, openapi
from command.audit_http import AUDITED, REFUSAL, audit_request, came_over_https
from command.errors import ApiError
from command.http_guard import outcome_of, page_csp, security_headers, tile_source
from command.keys import POOL, SETTINGS
from command.production import settings_problems
from command.web import PRINCIPAL, Handler

log = logging.getLogger(__name__)

PAGE_POLICY = web.AppKey("page_csp", str)


def _route_of(request: web.Request) -> Route | None:
    resource = request.match_info.route.resource
    if resource is None:
        return None
    return lookup(request.method, resource.canonical)


def _target(request: web.Request, route: Route) -> str | None:
    ident = request.match_info.get("id") or request.match_info.get("kind")
    if ident is None:
        return None
    noun = route.scope or route.tag.rstrip("s")
    if route.path.startswith("/api/users/"):
        noun = "user"
    return f"{noun}:{ident[:64]}"


async def _record_after(request: web.Request, route: Route, status: int, message: str | None) -> None:
    """Record a request the handler did not: a refusal, an error, or a success
    of a handler that has no transaction of its own to record it in."""
    detail = {"message": message[:300]} if message else None
    try:
        async with request.app[POOL].acquire() as conn:
            await audit_request(
                request,
                conn,
                request.get(PRINCIPAL),
                route.audit or "request.unknown",
                outcome=outcome_of(status),
                target=_target(request, route),
                status=status,
                detail=detail,
            )
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        # The answer still goes out; the gap is logged where operators look.
        log.error(
            "could not write the audit row of %s %s (%s): %s", request.method, request.path, status, exc
        )


@web.middleware
async def guard_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse roles the route table does not list; audit what the handler did not."""
    route = _route_of(request)
    if route is None:
        return await handler(request)
    principal = request.get(PRINCIPAL)
    try:
        if route.roles is not None and principal is not None and principal.role not in route.roles:
            raise ApiError(403, "forbidden", f"this needs one of the roles: {', '.join(route.roles)}")
        response = await handler(request)
    except ApiError as exc:
        if route.audit and not request.get(AUDITED):
            await _record_after(request, route, exc.status, exc.message)
        raise
    except web.HTTPException as exc:
        if route.audit and not request.get(AUDITED):
            await _record_after(request, route, exc.status, exc.reason)
        raise
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        if route.audit and not request.get(AUDITED):
            await _record_after(request, route, 500, type(exc).__name__)
        raise
    if route.audit and not request.get(AUDITED):
        await _record_after(request, route, response.status, request.get(REFUSAL))
    return response


async def _add_headers(request: web.Request, response: web.StreamResponse) -> None:
    route = _route_of(request)
    page = response.content_type == "text/html" or (route is not None and route.response_media == "text/html")
    headers = security_headers(
        page,
        request.path,
        secure=came_over_https(request),
        page_policy=request.app[PAGE_POLICY],
    )
    for name, value in headers.items():
        response.headers.setdefault(name, value)


def _version() -> str:
    try:
        return metadata.version("emergency-command")
    except metadata.PackageNotFoundError:
        return "0"


async def openapi_document(request: web.Request) -> web.Response:
    return web.json_response(openapi(_version()))


# --- housekeeping ---------------------------------------------------------------

HOUSEKEEPING_INTERVAL_S = 3600.0
#: Ended sessions are kept this long after they expire (for investigations), then deleted.
SESSION_KEEP = timedelta(days=30)


async def housekeeping_once(pool: asyncpg.Pool, audit_retention_days: int) -> None:
    """Prune audit rows past retention, stale login failures and long-expired sessions."""
    now = datetime.now(UTC)
    async with pool.acquire() as conn:
        audited = await audit.prune(conn, audit_retention_days)
        failures = await login_limit.prune(conn, now)
        sessions = await conn.execute("DELETE FROM sessions WHERE expires_at < $1", now - SESSION_KEEP)
    if audited:
        log.info("audit log: %d entries past %d days deleted", audited, audit_retention_days)
    log.debug("housekeeping: %d login failures, %s expired sessions pruned", failures, sessions)


async def _housekeeping(pool: asyncpg.Pool, audit_retention_days: int) -> None:
    while True:
        try:
            await housekeeping_once(pool, audit_retention_days)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("security housekeeping failed (%s); trying again later", exc)
        await asyncio.sleep(HOUSEKEEPING_INTERVAL_S)


class ProductionRefused(RuntimeError):
    """EMERGENCY_MODE=production and something is not fit for it; the message lists what."""


async def security_ctx(app: web.Application) -> AsyncIterator[None]:
    """After the pool: the production checks against the database, then housekeeping."""
    settings = app[SETTINGS]
    if settings.mode == "production":
        async with app[POOL].acquire() as conn:
            problems = await db_roles.server_role_problems(conn)
            demo = await db_roles.demo_accounts(conn)
        if demo:
            problems.append(
                f"demo accounts are enabled: {', '.join(demo)} (disable them: POST /api/users/ID)"
            )
        if problems:
            raise ProductionRefused("refusing to start in production mode: " + "; ".join(problems))
    task = asyncio.create_task(
        _housekeeping(app[POOL], settings.audit_retention_days), name="security-housekeeping"
    )
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def install(app: web.Application) -> None:
    """Add the guard middleware (innermost: it runs after authentication), the
    security headers, ``GET /api/openapi.json`` and the production checks of
    the settings (raises ProductionRefused)."""
    settings = app[SETTINGS]
    if settings.mode == "production":
        problems = settings_problems(settings)
        if problems:
            raise ProductionRefused("refusing to start in production mode: " + "; ".join(problems))
    source = tile_source(settings.tile_url)
    app[PAGE_POLICY] = page_csp((source,) if source else ())
    app.middlewares.append(guard_middleware)
    app.on_response_prepare.append(_add_headers)
    app.router.add_get("/api/openapi.json", openapi_document)
