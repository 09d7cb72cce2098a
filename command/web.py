"""HTTP routes: the JSON API, the console feed endpoint, health, metrics, static files.

Every ``/api`` route except login requires a principal (bearer token or the
session cookie); role checks sit in the handler that owns the action.
Errors are always ``{"error": {"code", "message"}}`` with the right status.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from command import accounts, login_limit, queries
from command.audit_http import audit_request, came_over_https, client_of
from command.client_address import networks_of, peer_in
from command.console_api import get_config
from command.errors import ApiError as ApiError  # re-exported for the route modules
from command.feed_protocol import READERS, Principal
from command.feed_scope import FieldScope
from command.http_guard import cross_site_refusal
from command.hub import StoreUnavailable
from command.keys import HUB, METRICS, MQTT, PLANS, POOL, SETTINGS
from command.ws_guard import origin_allowed
from dispatch.recommendation import recommend_for, surroundings

log = logging.getLogger(__name__)

#: What "the database cannot be reached right now" looks like (not a refused query).
DATABASE_DOWN = (
    OSError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
)

COOKIE = "emergency_session"
PRINCIPAL = web.RequestKey("principal", Principal)
#: /api routes that need no sign-in.
PUBLIC_API = frozenset({"/api/login", "/api/openapi.json"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def now() -> datetime:
    return datetime.now(UTC)


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return header[7:].strip() or None
    return None


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error(exc.status, exc.code, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400 or not request.path.startswith("/api"):
            raise
        return error(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason)
    except DATABASE_DOWN:
        log.warning("database unavailable for %s %s", request.method, request.path)
        return error(503, "unavailable", "the database is unavailable; try again shortly")


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith("/api/"):
        return await handler(request)
    bearer = _bearer(request)
    # Cross-site request forgery (command/http_guard.py): a state-changing
    # request riding on the cookie must come from our own pages.
    refusal = cross_site_refusal(
        request.method,
        request.headers.get("Origin"),
        request.headers.get("Referer"),
        request.host,
        request.app[SETTINGS].allowed_origins,
        cookie_auth=bearer is None and COOKIE in request.cookies and request.path not in PUBLIC_API,
    )
    if refusal is not None:
        log.warning("refused a cross-site %s %s: %s", request.method, request.path, refusal)
        return error(403, "cross_site_request", refusal)
    if request.path in PUBLIC_API:
        return await handler(request)
    token = bearer or request.cookies.get(COOKIE)
    principal = None
    if token:
        async with request.app[POOL].acquire() as conn:
            principal = await accounts.authenticate(conn, token, now())
    if principal is None:
        return error(401, "unauthorized", "a valid bearer token or session cookie is required")
    request[PRINCIPAL] = principal
    return await handler(request)


def principal_of(request: web.Request) -> Principal:
    return request[PRINCIPAL]


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(400, "bad_json", "the request body must be a JSON object") from None
    if not isinstance(body, dict):
        raise ApiError(400, "bad_json", "the request body must be a JSON object")
    return body


async def login(request: web.Request) -> web.Response:
    body = await _json_body(request)
    username, password = body.get("username"), body.get("password")
    if not isinstance(username, str) or not isinstance(password, str):
        raise ApiError(400, "bad_request", "username and password are required strings")
    settings = request.app[SETTINGS]
    address = client_of(request)
    at = now()
    # One transaction: the throttle's lock, the failure it counts and the
    # audit row commit together (command/login_limit.py).
    async with request.app[POOL].acquire() as conn, conn.transaction():
        wait = await login_limit.retry_after(conn, username, address, at)
        session = None
        if wait is None:
            session = await accounts.login(
                conn, username, password, at, timedelta(seconds=settings.token_ttl_s)
            )
            if session is None:
                await login_limit.record_failure(conn, username, address, at)
            else:
                await login_limit.clear_account(conn, username)
        outcome, status = ("ok", 200) if session else ("denied", 429) if wait else ("failed", 401)
        await audit_request(
            request,
            conn,
            session.principal if session else None,
            "session.login",
            outcome=outcome,
            status=status,
            actor=username,
            detail={"retry_after_s": wait} if wait else None,
        )
    if wait is not None:
        return web.json_response(
            {
                "error": {
                    "code": "too_many_attempts",
                    "message": f"too many failed logins; try again in {wait} s",
                }
            },
            status=429,
            headers={"Retry-After": str(wait)},
        )
    if session is None:
        raise ApiError(401, "bad_credentials", "unknown user or wrong password")
    response = web.json_response(
        {"token": session.token, "role": session.principal.role, "expires_at": session.expires_at.isoformat()}
    )
    response.set_cookie(
        COOKIE,
        session.token,
        max_age=settings.token_ttl_s,
        httponly=True,
        samesite="Strict",
        secure=came_over_https(request),
        path="/",
    )
    return response


async def logout(request: web.Request) -> web.Response:
    token = _bearer(request) or request.cookies.get(COOKIE)
    if token:
        async with request.app[POOL].acquire() as conn, conn.transaction():
            await accounts.logout(conn, token, now())
            await audit_request(request, conn, principal_of(request), "session.logout")
    response = web.json_response({"ok": True})
    response.del_cookie(COOKIE, path="/")
    return response


async def me(request: web.Request) -> web.Response:
    """Who the token or cookie belongs to: lets a reloaded page show the signed-in user."""
    principal = principal_of(request)
    return web.json_response(
        {
            "username": principal.username,
            "role": principal.role,
            "unit_id": principal.unit_id,
            "districts": list(principal.districts) if principal.districts is not None else None,
        }
    )


def _int_query(request: web.Request, name: str, default: int, maximum: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "bad_request", f"{name} must be an integer") from None
    if not 1 <= value <= maximum:
        raise ApiError(400, "bad_request", f"{name} must be between 1 and {maximum}")
    return value


async def list_incidents(request: web.Request) -> web.Response:
    status = request.query.get("status", "open")
    if status not in ("open", "all"):
        raise ApiError(400, "bad_request", "status must be 'open' or 'all'")
    limit = _int_query(request, "limit", 500, 5000)
    async with request.app[POOL].acquire() as conn:
        incidents = await queries.list_incidents(
            conn, principal_of(request), include_ended=status == "all", limit=limit
        )
    return web.json_response({"incidents": incidents})


async def get_incident(request: web.Request) -> web.Response:
    try:
        incident_id = int(request.match_info["id"])
    except ValueError:
        raise ApiError(404, "not_found", "no such incident") from None
    principal = principal_of(request)
    async with request.app[POOL].acquire() as conn:
        found = await queries.get_incident(conn, principal, incident_id)
        if found is None:
            # Out of scope and absent look the same, so existence does not leak.
            raise ApiError(404, "not_found", "no such incident")
        incident, place = found
        around = await surroundings(conn, place, request.app[PLANS])
    # The incident's own district (set when it opened) stays; the places are added.
    return web.json_response(incident | {"hazards": around["hazards"], "sites": around["sites"]})


async def get_recommendation(request: web.Request) -> web.Response:
    """Who and what should go to an incident, and how soon they can be there."""
    principal = principal_of(request)
    try:
        incident_id = int(request.match_info["id"])
    except ValueError:
        raise ApiError(404, "not_found", "no such incident") from None
    async with request.app[POOL].acquire() as conn:
        place = await queries.incident_place(conn, principal, incident_id)
        if place is None:
            raise ApiError(404, "not_found", "no such incident")
        body = await recommend_for(
            conn,
            place,
            request.app[PLANS],
            now=now(),
            position_max_age=timedelta(seconds=request.app[SETTINGS].position_max_age_s),
        )
    return web.json_response(body)


def _require(request: web.Request, *roles: str) -> Principal:
    principal = principal_of(request)
    if principal.role not in roles:
        raise ApiError(403, "forbidden", f"this needs one of the roles: {', '.join(roles)}")
    return principal


async def list_units(request: web.Request) -> web.Response:
    async with request.app[POOL].acquire() as conn:
        return web.json_response({"units": await queries.list_units(conn, principal_of(request))})


def _city_layer(name: str, fetch: Callable[[asyncpg.Connection], Awaitable[list[dict[str, Any]]]]) -> Handler:
    """A read-only layer of the city's data (districts, roads, depots...): any signed-in role may read it."""

    async def handler(request: web.Request) -> web.Response:
        async with request.app[POOL].acquire() as conn:
            return web.json_response({name: await fetch(conn)})

    return handler


async def list_sensors(request: web.Request) -> web.Response:
    _require(request, *READERS)
    limit = _int_query(request, "limit", 1000, 100_000)
    async with request.app[POOL].acquire() as conn:
        return web.json_response({"sensors": await queries.list_sensors(conn, limit)})


async def list_dead_letters(request: web.Request) -> web.Response:
    _require(request, "admin")
    limit = _int_query(request, "limit", 200, 5000)
    async with request.app[POOL].acquire() as conn:
        return web.json_response({"dead_letters": await queries.list_dead_letters(conn, limit)})


async def healthz(request: web.Request) -> web.Response:
    database = "ok"
    try:
        async with request.app[POOL].acquire(timeout=2) as conn:
            await conn.fetchval("SELECT 1", timeout=2)
    except Exception as exc:  # any failure is the answer, not an error
        database = f"error: {type(exc).__name__}"
    mqtt = request.app[MQTT]
    broker = "ok" if mqtt.connected else "disconnected"
    healthy = database == "ok" and broker == "ok"
    return web.json_response(
        {
            "status": "ok" if healthy else "degraded",
            "database": database,
            "broker": broker,
            "consoles": len(request.app[HUB]),
            "feed_seq": request.app[HUB].last_seq,
            "ingest_queue": mqtt.pending(),
        },
        status=200 if healthy else 503,
    )


async def metrics(request: web.Request) -> web.Response:
    # The scraper is a machine on the monitoring network, not a person with a
    # token: its own TCP address decides (X-Forwarded-For is never believed here).
    if not peer_in(request.remote, networks_of(request.app[SETTINGS].metrics_networks)):
        raise ApiError(403, "forbidden", "metrics are served to EMERGENCY_METRICS_NETWORKS only")
    m = request.app[METRICS]
    m.consoles.set(len(request.app[HUB]))
    m.console_overflows.set(request.app[HUB].overflows)
    m.qos0_dropped.set(request.app[MQTT].dropped_qos0)
    return web.Response(body=generate_latest(m.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def websocket(request: web.Request) -> web.StreamResponse:
    app = request.app
    pool = app[POOL]
    origin = request.headers.get("Origin")
    if not origin_allowed(origin, request.host, app[SETTINGS].allowed_origins):
        # Cross-site WebSocket hijacking: another site's page riding on our cookie.
        log.warning("refused a WebSocket from origin %r", origin)
        raise ApiError(403, "forbidden_origin", "this origin may not open the feed")

    # Once the socket is upgraded no HTTP error can be answered: the hub
    # closes it with 1013 instead, and the console resumes by seq.
    @contextlib.asynccontextmanager
    async def connection() -> AsyncIterator[asyncpg.Connection]:
        try:
            async with pool.acquire() as conn:
                yield conn
        except DATABASE_DOWN as exc:
            raise StoreUnavailable(f"the database is unavailable ({type(exc).__name__})") from exc

    async def authenticate(token: str) -> Principal | None:
        async with connection() as conn:
            return await accounts.authenticate(conn, token, now())

    async def snapshot(principal: Principal) -> tuple[dict[str, Any], FieldScope]:
        async with connection() as conn:
            return await queries.snapshot(conn, principal)

    async def replay(principal: Principal, since: int, limit: int) -> Any:
        async with connection() as conn:
            return await queries.replay(conn, principal, since, limit)

    return await app[HUB].serve(
        request,
        authenticate=authenticate,
        snapshot=snapshot,
        replay=replay,
        cookie_token=request.cookies.get(COOKIE),
    )


def add_routes(app: web.Application) -> None:
    frontend = app[SETTINGS].frontend_dir
    r = app.router
    r.add_post("/api/login", login)
    r.add_post("/api/logout", logout)
    r.add_get("/api/me", me)
    r.add_get("/api/config", get_config)
    r.add_get("/api/incidents", list_incidents)
    r.add_get("/api/incidents/{id}", get_incident)
    r.add_get("/api/incidents/{id}/recommendation", get_recommendation)
    r.add_get("/api/units", list_units)
    r.add_get("/api/depots", _city_layer("depots", queries.list_depots))
    r.add_get("/api/hazards", _city_layer("hazards", queries.list_hazards))
    r.add_get("/api/sites", _city_layer("sites", queries.list_sites))
    r.add_get("/api/districts", _city_layer("districts", queries.list_districts))
    r.add_get("/api/roads", _city_layer("roads", queries.list_roads))
    r.add_get("/api/sensors", list_sensors)
    r.add_get("/api/dead-letters", list_dead_letters)
    r.add_get("/healthz", healthz)
    r.add_get("/metrics", metrics)
    r.add_get("/ws", websocket)

    index = frontend / "index.html"

    async def console(request: web.Request) -> web.FileResponse:
        return web.FileResponse(index)

    r.add_get("/", console)

    field_page = frontend / "field.html"

    async def field(request: web.Request) -> web.FileResponse:
        return web.FileResponse(field_page)

    r.add_get("/field", field)
    if (frontend / "static").is_dir():
        r.add_static("/static/", frontend / "static")
    leaflet = frontend / "node_modules" / "leaflet" / "dist"
    if leaflet.is_dir():
        r.add_static("/vendor/leaflet/", leaflet)
    else:
        log.warning("Leaflet not installed under %s: run `make install`", leaflet)
