"""Every HTTP route × every role (and anonymous) × own and foreign objects.

The expected answer comes from the route table (command/api_routes.py):
a role it does not list gets 403, anonymous gets 401 on anything not public,
and an object outside the caller's scope (a field team's other units'
dispatches, incidents and tasks; another district's for a district-bound
account) gets 404, never 403, so its existence does not leak. Allowed calls
are made with valid bodies and must give the route's success status (or,
for state changes another role already made, the 409 that says so).

The server runs as the DML-only database role, so every route also proves
the role holds the privileges it needs.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg

from command.api_routes import ROUTES, Route
from tests.integration.helpers import PASSWORD, running_server, settings_for
from tests.integration.security_world import (
    ACCOUNTS,
    World,
    app_role,
    build_world,
    call,
    seed_accounts_and_city,
)

PRINCIPALS = (*ACCOUNTS, "anonymous")
SCOPED = {"field", "dispatcher_d2"}

# Objects by principal: its own, and foreign ones (visible anyway to an
# account with no unit and no district binding).
OWN = {"field": "1", "dispatcher_d2": "3"}
FOREIGN = {"field": "2", "dispatcher_d2": "1"}


@dataclass(frozen=True)
class Case:
    """How to call a route: path (with {I}, {P}, {T}, {user} filled per
    principal and variant), body, and what success looks like."""

    ok: frozenset[int]
    path: str | None = None
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None
    fresh_token: bool = False


UNITS_CSV = (
    b"id,callsign,type,capabilities,crew,station,district_id,status,lat,lon\n"
    b"U-9,Engine 9,fire_engine,,4,,D-1,available,30.27,120.15\n"
)

CASES: dict[tuple[str, str], Case | Callable[[str], Case]] = {
    ("POST", "/api/login"): lambda who: Case(
        frozenset({200}), body={"username": "viewer" if who == "anonymous" else who, "password": PASSWORD}
    ),
    ("POST", "/api/logout"): Case(frozenset({200}), fresh_token=True),
    ("GET", "/api/me"): Case(frozenset({200})),
    ("POST", "/api/me/password"): Case(
        frozenset({200}), body={"old_password": PASSWORD, "new_password": PASSWORD}
    ),
    ("GET", "/api/config"): Case(frozenset({200})),
    ("GET", "/api/users"): Case(frozenset({200})),
    ("POST", "/api/users"): lambda who: Case(
        frozenset({201}),
        body={"username": f"new-{uuid.uuid4().hex[:8]}", "password": PASSWORD, "role": "viewer"},
    ),
    ("GET", "/api/users/{id}"): Case(frozenset({200}), path="/api/users/{user}"),
    ("POST", "/api/users/{id}"): Case(
        frozenset({200}), path="/api/users/{user}", body={"districts": ["D-1"]}
    ),
    ("POST", "/api/users/{id}/password"): Case(
        frozenset({200}), path="/api/users/{user}/password", body={"password": PASSWORD}
    ),
    ("GET", "/api/audit"): Case(frozenset({200})),
    ("GET", "/api/incidents"): Case(frozenset({200})),
    ("GET", "/api/incidents/{id}"): Case(frozenset({200}), path="/api/incidents/{I}"),
    ("GET", "/api/incidents/{id}/recommendation"): Case(
        frozenset({200}), path="/api/incidents/{I}/recommendation"
    ),
    ("GET", "/api/units"): Case(frozenset({200})),
    ("GET", "/api/depots"): Case(frozenset({200})),
    ("GET", "/api/hazards"): Case(frozenset({200})),
    ("GET", "/api/sites"): Case(frozenset({200})),
    ("GET", "/api/districts"): Case(frozenset({200})),
    ("GET", "/api/roads"): Case(frozenset({200})),
    ("GET", "/api/sensors"): Case(frozenset({200})),
    ("GET", "/api/dead-letters"): Case(frozenset({200})),
    ("GET", "/api/stats"): Case(frozenset({200})),
    ("POST", "/api/incidents"): Case(
        frozenset({201}),
        body={"kind": "flood", "severity": "Minor", "lat": 30.3, "lon": 120.2, "title": "Call"},
    ),
    # Manual incidents start confirmed and are responding once dispatched:
    # the first allowed caller contains it, later ones are told it already is.
    ("POST", "/api/incidents/{id}/status"): Case(
        frozenset({200, 409}), path="/api/incidents/{I}/status", body={"status": "contained"}
    ),
    ("POST", "/api/incidents/{id}/dispatches"): Case(
        frozenset({201, 409}), path="/api/incidents/{I}/dispatches", body={"units": ["U-4"]}
    ),
    ("GET", "/api/incidents/{id}/dispatches"): Case(frozenset({200}), path="/api/incidents/{I}/dispatches"),
    ("GET", "/api/incidents/{id}/tasks"): Case(frozenset({200}), path="/api/incidents/{I}/tasks"),
    ("POST", "/api/incidents/{id}/tasks"): Case(
        frozenset({201}), path="/api/incidents/{I}/tasks", body={"title": "Cordon", "due_in_s": 600}
    ),
    ("GET", "/api/my/dispatches"): Case(frozenset({200})),
    ("GET", "/api/dispatches/{id}"): Case(frozenset({200}), path="/api/dispatches/{P}"),
    ("POST", "/api/dispatches/{id}/status"): Case(
        frozenset({200, 409}), path="/api/dispatches/{P}/status", body={"status": "acknowledged"}
    ),
    ("POST", "/api/tasks/{id}"): Case(frozenset({200}), path="/api/tasks/{T}", body={"note": "checked"}),
    ("POST", "/api/my/position"): Case(frozenset({200, 429}), body={"lat": 30.2, "lon": 120.1}),
    # An empty upload: refused as empty (400) only after authorization passed.
    ("POST", "/api/import/roads"): Case(frozenset({400}), path="/api/import/roads?format=osm", raw=b""),
    ("GET", "/api/export/roads"): Case(frozenset({200})),
    ("POST", "/api/import/{kind}"): Case(
        frozenset({201}), path="/api/import/units", raw=UNITS_CSV, headers={"Content-Type": "text/csv"}
    ),
    ("GET", "/api/export/{kind}"): Case(frozenset({200}), path="/api/export/districts"),
    ("GET", "/api/openapi.json"): Case(frozenset({200})),
    ("GET", "/healthz"): Case(frozenset({200, 503})),
    ("GET", "/metrics"): Case(frozenset({200})),
    # Without the Upgrade handshake /ws is a bad request for everyone; who may
    # see what on the feed is decided by its hello (test_feed_security.py,
    # test_feed_scope.py).
    ("GET", "/ws"): Case(frozenset({400})),
    ("GET", "/"): Case(frozenset({200})),
    ("GET", "/field"): Case(frozenset({200})),
}


def expected(route: Route, who: str, variant: str) -> int | None:
    """The refusal this call must get, or None when it must be allowed."""
    if route.roles is None:
        return None
    if who == "anonymous":
        return 401
    role = ACCOUNTS[who][0]
    if role not in route.roles:
        return 403
    if variant == "foreign" and route.scope in ("incident", "dispatch", "task") and who in SCOPED:
        return 404
    return None


def _fill(path: str, world: World, who: str, variant: str) -> str:
    number = (FOREIGN if variant == "foreign" else OWN).get(who, "3" if variant == "foreign" else "1")
    return (
        path.replace("{I}", str(world.incidents[f"I{number}"]))
        .replace("{P}", str(world.dispatches[f"P{number}"]))
        .replace("{T}", str(world.tasks[f"T{number}"]))
        .replace("{user}", str(world.user_ids["target"]))
    )


async def test_every_route_as_every_role_on_own_and_foreign_objects(database_url: str, mqtt_url: str) -> None:
    missing = [r.key for r in ROUTES if r.key not in CASES]
    assert not missing, f"routes without an authorization case: add them to CASES: {missing}"
    tokens, ids = await seed_accounts_and_city(database_url)
    async with app_role(database_url) as server_url:
        settings = settings_for(server_url, mqtt_url)
        async with running_server(settings), aiohttp.ClientSession() as http:
            world = await build_world(http, settings, tokens, ids)
            failures: list[str] = []
            calls = allowed_ok = 0
            for route in ROUTES:
                spec = CASES[route.key]
                variants = ("own", "foreign") if route.scope in ("incident", "dispatch", "task") else ("own",)
                for who in PRINCIPALS:
                    case = spec(who) if callable(spec) else spec
                    for variant in variants:
                        path = _fill(case.path or route.path, world, who, variant)
                        token = None if who == "anonymous" else tokens[who]
                        if case.fresh_token and token is not None:
                            status, body = await call(
                                http,
                                world.base,
                                "POST",
                                "/api/login",
                                None,
                                {"username": who, "password": PASSWORD},
                            )
                            assert status == 200, body
                            token = body["token"]
                        kwargs: dict[str, Any] = {"headers": case.headers}
                        if case.raw is not None:
                            kwargs["data"] = case.raw
                        status, body = await call(
                            http,
                            world.base,
                            route.method,
                            path,
                            token,
                            case.body if case.raw is None else None,
                            **kwargs,
                        )
                        calls += 1
                        refusal = expected(route, who, variant)
                        where = f"{route.method} {path} as {who} ({variant})"
                        if refusal is not None:
                            if status != refusal:
                                failures.append(f"{where}: {status}, expected {refusal}: {body}")
                            elif not (
                                isinstance(body, dict) and {"code", "message"} <= body.get("error", {}).keys()
                            ):
                                failures.append(f"{where}: refusal without the error shape: {body}")
                        elif status not in case.ok:
                            failures.append(f"{where}: {status}, expected one of {sorted(case.ok)}: {body}")
                        else:
                            allowed_ok += 1
            assert not failures, f"{len(failures)} of {calls} calls wrong:\n" + "\n".join(failures)
            assert allowed_ok > 100  # the matrix did allow things, it did not only refuse

            # A refusal of a state change is itself audited, with who and why.
            conn = await asyncpg.connect(database_url)
            try:
                denied = await conn.fetch(
                    "SELECT actor, actor_role, status FROM audit_log "
                    "WHERE action = 'incident.create' AND outcome = 'denied'"
                )
                hidden = await conn.fetchval(
                    "SELECT count(*) FROM audit_log WHERE action = 'dispatch.status' AND actor = 'field' "
                    "AND outcome = 'failed' AND status = 404"
                )
            finally:
                await conn.close()
            assert {(r["actor"], r["actor_role"], r["status"]) for r in denied} == {
                ("viewer", "viewer", 403),
                ("field", "field", 403),
            }
            assert hidden == 1
