"""A small city with accounts of every role, own and foreign objects, and a server
that runs as the DML-only database role (command/db_roles.py), for the
security tests: the authorization matrix, the audit scenario, OpenAPI."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
from shapely.geometry import MultiPolygon, Point, box

from command import accounts, db, db_roles
from command.settings import Settings
from tests.integration.helpers import PASSWORD, base_url


@asynccontextmanager
async def app_role(database_url: str) -> AsyncIterator[str]:
    """A fresh login role holding exactly the server's privileges in this
    database; yields its URL. Dropped afterwards (roles are cluster-wide)."""
    role = f"app_{uuid.uuid4().hex[:10]}"
    password = secrets.token_urlsafe(18)
    conn = await asyncpg.connect(database_url)
    try:
        await db_roles.ensure_role(conn, role, password)
        await db_roles.grant_app_privileges(conn, role)
    finally:
        await conn.close()
    try:
        yield db_roles.with_login(database_url, role, password)
    finally:
        conn = await asyncpg.connect(database_url)
        try:
            # Its sessions first: a lingering pool connection would block DROP ROLE.
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", role
            )
            await conn.execute(f'DROP OWNED BY "{role}"')
            await conn.execute(f'DROP ROLE "{role}"')
        finally:
            await conn.close()


#: Accounts of the world: name -> (role, unit, districts).
ACCOUNTS: dict[str, tuple[str, str | None, list[str] | None]] = {
    "admin": ("admin", None, None),
    "commander": ("commander", None, None),
    "dispatcher": ("dispatcher", None, None),
    "viewer": ("viewer", None, None),
    "field": ("field", "U-1", None),
    # Bound to the second district: D-1's objects are foreign to it.
    "dispatcher_d2": ("dispatcher", None, ["D-2"]),
}


@dataclass
class World:
    """What the tests act on. ``incidents``/``dispatches``/``tasks`` map a
    label (I1, P1, T1...) to the id the server gave it."""

    base: str
    tokens: dict[str, str]
    user_ids: dict[str, int]
    incidents: dict[str, int] = field(default_factory=dict)
    dispatches: dict[str, int] = field(default_factory=dict)
    tasks: dict[str, int] = field(default_factory=dict)


async def seed_accounts_and_city(owner_url: str) -> tuple[dict[str, str], dict[str, int]]:
    """Two districts, five units, a depot, and one account per entry of ACCOUNTS
    plus ``target`` (a viewer the admin routes change). Returns tokens and user ids."""
    conn = await asyncpg.connect(owner_url)
    await db.register_codecs(conn)
    try:
        await conn.executemany(
            "INSERT INTO districts (id, name, geom) VALUES ($1, $2, $3)",
            [
                ("D-1", "West", MultiPolygon([box(120.0, 30.0, 120.3, 30.5)])),
                ("D-2", "East", MultiPolygon([box(120.3, 30.0, 120.6, 30.5)])),
            ],
        )
        await conn.executemany(
            """INSERT INTO units (id, callsign, type, capabilities, position, position_at, district_id)
               VALUES ($1, $2, 'fire_engine', '{fire_suppression}', $3, now(), $4)""",
            [
                ("U-1", "Engine 1", Point(120.10, 30.20), "D-1"),
                ("U-2", "Engine 2", Point(120.11, 30.21), "D-1"),
                ("U-3", "Engine 3", Point(120.40, 30.20), "D-2"),
                ("U-4", "Engine 4", Point(120.12, 30.22), "D-1"),
                ("U-5", "Engine 5", Point(120.41, 30.21), "D-2"),
            ],
        )
        await conn.execute(
            "INSERT INTO sensors (id, kind, location, district_id) VALUES ('S-1', 'smoke', $1, 'D-1')",
            Point(120.15, 30.27),
        )
        tokens: dict[str, str] = {}
        ids: dict[str, int] = {}
        for name, (role, unit, districts) in {**ACCOUNTS, "target": ("viewer", None, None)}.items():
            ids[name] = await accounts.add_user(
                conn, username=name, password=PASSWORD, role=role, unit_id=unit, districts=districts
            )
            session = await accounts.login(conn, name, PASSWORD, datetime.now(UTC), timedelta(hours=1))
            assert session is not None
            tokens[name] = session.token
        return tokens, ids
    finally:
        await conn.close()


async def call(
    http: aiohttp.ClientSession,
    base: str,
    method: str,
    path: str,
    token: str | None,
    body: Any = None,
    **kwargs: Any,
) -> tuple[int, Any]:
    headers = dict(kwargs.pop("headers", {}))
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with http.request(method, base + path, json=body, headers=headers, **kwargs) as resp:
        text = await resp.text()
        try:
            return resp.status, await resp.json(content_type=None) if text else None
        except ValueError:
            return resp.status, text


async def build_world(
    http: aiohttp.ClientSession, settings: Settings, tokens: dict[str, str], ids: dict[str, int]
) -> World:
    """Incidents I1, I2 (district D-1) and I3 (D-2); U-1 (the field account's
    unit) dispatched to I1, U-2 to I2, U-3 to I3; a task owned by each."""
    base = base_url(settings)
    world = World(base, tokens, ids)
    admin = tokens["admin"]
    places = {"I1": (30.25, 120.15), "I2": (30.26, 120.16), "I3": (30.25, 120.45)}
    for label, (lat, lon) in places.items():
        status, body = await call(
            http,
            base,
            "POST",
            "/api/incidents",
            admin,
            {"kind": "fire", "severity": "Moderate", "lat": lat, "lon": lon, "title": f"Fire {label}"},
        )
        assert status == 201, body
        world.incidents[label] = body["id"]
    for label, (incident, unit) in {"P1": ("I1", "U-1"), "P2": ("I2", "U-2"), "P3": ("I3", "U-3")}.items():
        status, body = await call(
            http,
            base,
            "POST",
            f"/api/incidents/{world.incidents[incident]}/dispatches",
            admin,
            {"units": [unit]},
        )
        assert status == 201, body
        world.dispatches[label] = body["dispatches"][0]["id"]
    for label, (incident, unit) in {"T1": ("I1", "U-1"), "T2": ("I2", "U-2"), "T3": ("I3", "U-3")}.items():
        status, body = await call(
            http,
            base,
            "POST",
            f"/api/incidents/{world.incidents[incident]}/tasks",
            admin,
            {"title": f"Check {label}", "due_in_s": 3600, "owner_unit": unit},
        )
        assert status == 201, body
        world.tasks[label] = body["id"]
    return world
