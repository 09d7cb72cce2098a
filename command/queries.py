"""Reads for the HTTP API and the console feed: snapshots, replays, lists.

Every function takes the caller's :class:`Principal` where scope matters and
filters in SQL, so an object outside the caller's scope is never loaded.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from command.dispatch_store import incident_dispatches
from command.feed import event_from_row
from command.feed_protocol import Event, Principal
from command.feed_scope import FieldScope
from command.incidents import ENDED, to_wire
from command.rows import INCIDENT_COLUMNS, UNIT_COLUMNS, incident_from_row, unit_wire
from command.tasks_store import list_tasks
from command.timeline import timeline
from dispatch.progress import ACTIVE
from dispatch.recommendation import IncidentPlace


def _geojson(geom: Any) -> dict[str, Any] | None:
    return geom.__geo_interface__ if geom is not None else None


def _incident_scope(principal: Principal) -> tuple[str, list[Any]]:
    """A WHERE fragment (over alias ``i``) limiting incidents to the principal's scope."""
    if principal.role == "field":
        # A field team sees the incidents it has been dispatched to.
        return "i.id IN (SELECT d.incident_id FROM dispatches d WHERE d.unit_id = $1)", [principal.unit_id]
    if principal.districts is not None:
        return "i.district_id = ANY($1::text[])", [list(principal.districts)]
    return "true", []


async def list_incidents(
    conn: asyncpg.Connection, principal: Principal, *, include_ended: bool, limit: int
) -> list[dict[str, Any]]:
    scope, args = _incident_scope(principal)
    n = len(args)
    rows = await conn.fetch(
        f"""
        SELECT {INCIDENT_COLUMNS} FROM incidents i
        WHERE {scope} AND (${n + 1}::boolean OR NOT (i.status = ANY(${n + 2}::text[])))
        ORDER BY i.updated_at DESC LIMIT ${n + 3}
        """,
        *args,
        include_ended,
        sorted(ENDED),
        limit,
    )
    return [to_wire(incident_from_row(r)) for r in rows]


async def get_incident(
    conn: asyncpg.Connection, principal: Principal, incident_id: int
) -> tuple[dict[str, Any], IncidentPlace] | None:
    """The incident with its alarms and timeline, and its place (for what lies
    around it), or None when absent or out of scope."""
    scope, args = _incident_scope(principal)
    n = len(args)
    row = await conn.fetchrow(
        f"SELECT {INCIDENT_COLUMNS} FROM incidents i WHERE {scope} AND i.id = ${n + 1}",
        *args,
        incident_id,
    )
    if row is None:
        return None
    incident = to_wire(incident_from_row(row))
    place = IncidentPlace(row["id"], row["kind"], row["severity"], row["location"], row["area"])
    alarms = await conn.fetch(
        """
        SELECT a.sensor_id, a.alarm_id, a.kind, a.severity, a.time, a.received_at,
               ST_Y(a.location) AS lat, ST_X(a.location) AS lon, a.value, a.unit, a.message
        FROM alarms a WHERE a.incident_id = $1 ORDER BY a.time DESC, a.id DESC LIMIT 500
        """,
        incident_id,
    )
    incident["alarms"] = [
        {
            "sensor_id": a["sensor_id"],
            "id": a["alarm_id"],
            "kind": a["kind"],
            "severity": a["severity"],
            "time": a["time"].isoformat(),
            "received_at": a["received_at"].isoformat(),
            "lat": a["lat"],
            "lon": a["lon"],
            "value": a["value"],
            "unit": a["unit"],
            "message": a["message"],
        }
        for a in alarms
    ]
    recorded = await timeline(conn, incident_id)
    if not any(entry["action"] == "opened" for entry in recorded):
        # Incidents opened by ingest are not written to the timeline on the hot
        # path; their opening is the row's own opened_at.
        opened = {"id": None, "time": incident["opened_at"], "actor": incident["source"], "action": "opened"}
        recorded.insert(0, opened | {"from": None, "to": "new", "detail": {}})
    incident["timeline"] = recorded
    # What the feed said about it (alarms escalating it, dispatches...), by seq.
    events = await conn.fetch(
        "SELECT seq, name, created_at FROM events WHERE incident_id = $1 ORDER BY seq LIMIT 1000", incident_id
    )
    incident["events"] = [
        {"seq": e["seq"], "name": e["name"], "time": e["created_at"].isoformat()} for e in events
    ]
    incident["dispatches"] = await incident_dispatches(conn, incident_id)
    incident["tasks"] = await list_tasks(conn, incident_id)
    return incident, place


async def incident_place(
    conn: asyncpg.Connection, principal: Principal, incident_id: int
) -> IncidentPlace | None:
    """The incident's kind, severity and geometry, or None when absent or out of scope."""
    scope, args = _incident_scope(principal)
    n = len(args)
    row = await conn.fetchrow(
        f"""
        SELECT i.id, i.kind, i.severity, i.location, i.area FROM incidents i
        WHERE {scope} AND i.id = ${n + 1}
        """,
        *args,
        incident_id,
    )
    if row is None:
        return None
    return IncidentPlace(row["id"], row["kind"], row["severity"], row["location"], row["area"])


# Units whose active dispatch works an incident unit $1 has been dispatched to.
_WORKERS = """
    SELECT d.unit_id FROM dispatches d
    WHERE d.status = ANY($2::text[])
      AND d.incident_id IN (SELECT mine.incident_id FROM dispatches mine WHERE mine.unit_id = $1)
"""


async def list_units(conn: asyncpg.Connection, principal: Principal) -> list[dict[str, Any]]:
    if principal.role == "field":
        # Its own unit and the units working its incidents alongside it.
        rows = await conn.fetch(
            f"SELECT {UNIT_COLUMNS} FROM units u WHERE u.id = $1 OR u.id IN ({_WORKERS}) ORDER BY u.id",
            principal.unit_id,
            sorted(ACTIVE),
        )
    elif principal.districts is not None:
        rows = await conn.fetch(
            f"SELECT {UNIT_COLUMNS} FROM units u WHERE u.district_id = ANY($1::text[]) ORDER BY u.id",
            list(principal.districts),
        )
    else:
        rows = await conn.fetch(f"SELECT {UNIT_COLUMNS} FROM units u ORDER BY u.id")
    return await _with_dispatch(conn, [unit_wire(r) for r in rows])


async def _with_dispatch(conn: asyncpg.Connection, units: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add each unit's active dispatch, ``{"id", "incident_id", "status"}`` or None.

    The console's units board shows it. It rides in the snapshot (read in the
    same transaction as its seq), so dispatch events after that seq keep it
    exact; a unit has at most one active dispatch (a unique index says so).
    """
    rows = await conn.fetch(
        """
        SELECT id, incident_id, unit_id, status FROM dispatches
        WHERE status = ANY($1::text[]) AND unit_id = ANY($2::text[])
        """,
        sorted(ACTIVE),
        [u["id"] for u in units],
    )
    active = {
        r["unit_id"]: {"id": r["id"], "incident_id": r["incident_id"], "status": r["status"]} for r in rows
    }
    for unit in units:
        unit["dispatch"] = active.get(unit["id"])
    return units


async def field_scope(conn: asyncpg.Connection, principal: Principal) -> FieldScope:
    """A field team's incidents and fellow units, as the feed's scope starts from."""
    if principal.role != "field":
        return FieldScope()
    row = await conn.fetchrow(
        f"""
        SELECT array(SELECT DISTINCT incident_id FROM dispatches WHERE unit_id = $1) AS incidents,
               array({_WORKERS} AND d.unit_id <> $1) AS workers
        """,
        principal.unit_id,
        sorted(ACTIVE),
    )
    return FieldScope(set(row["incidents"]), set(row["workers"]))


async def snapshot(conn: asyncpg.Connection, principal: Principal) -> tuple[dict[str, Any], FieldScope]:
    """Open incidents and units as of one outbox seq, and the scope the live
    feed starts from, read in one consistent snapshot."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        seq = await conn.fetchval("SELECT coalesce(max(seq), 0) FROM events")
        incidents = await list_incidents(conn, principal, include_ended=False, limit=5000)
        units = await list_units(conn, principal)
        scope = await field_scope(conn, principal)
    return {"type": "snapshot", "seq": seq, "incidents": incidents, "units": units}, scope


async def replay(
    conn: asyncpg.Connection, principal: Principal, since: int, limit: int
) -> tuple[list[Event], FieldScope] | None:
    """Every event after ``since`` (the hub filters them through the console's
    view) and the scope to start from, or None when a replay cannot be exact
    (``since`` is older than the retained outbox, or more than ``limit`` events
    behind, or from another database)."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        scope = await field_scope(conn, principal)
        bounds = await conn.fetchrow("SELECT min(seq) AS first, max(seq) AS last FROM events")
        first, last = bounds["first"], bounds["last"]
        if last is None:
            return ([], scope) if since == 0 else None
        if since > last or since < first - 1 or last - since > limit:
            return None
        rows = await conn.fetch(
            """
            SELECT seq, name, data, incident_id, unit_id, district_id FROM events
            WHERE seq > $1 ORDER BY seq
            """,
            since,
        )
    return [event_from_row(r) for r in rows], scope


async def list_depots(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """
        SELECT d.id, d.name, d.location, d.district_id,
               coalesce(json_agg(json_build_object('item', s.item, 'quantity', s.quantity,
                                                   'unit', s.unit, 'expires_on', s.expires_on)
                                 ORDER BY s.item) FILTER (WHERE s.item IS NOT NULL), '[]') AS stock
        FROM depots d LEFT JOIN stock s ON s.depot_id = d.id
        GROUP BY d.id ORDER BY d.id
        """
    )
    return [
        {
            "id": r["id"],
            "name": r["name"],
            "lat": r["location"].y,
            "lon": r["location"].x,
            "district": r["district_id"],
            "stock": r["stock"],
        }
        for r in rows
    ]


async def list_hazards(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    rows = await conn.fetch("SELECT id, kind, name, geom, attrs FROM hazards ORDER BY id")
    return [
        {
            "id": r["id"],
            "kind": r["kind"],
            "name": r["name"],
            "geometry": _geojson(r["geom"]),
            "attrs": r["attrs"],
        }
        for r in rows
    ]


async def list_sites(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    rows = await conn.fetch("SELECT id, kind, name, geom, capacity, beds FROM sites ORDER BY id")
    return [
        {
            "id": r["id"],
            "kind": r["kind"],
            "name": r["name"],
            "geometry": _geojson(r["geom"]),
            "capacity": r["capacity"],
            "beds": r["beds"],
        }
        for r in rows
    ]


async def list_districts(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    rows = await conn.fetch("SELECT id, name, name_zh, geom FROM districts ORDER BY id")
    return [
        {"id": r["id"], "name": r["name"], "name_zh": r["name_zh"], "geometry": _geojson(r["geom"])}
        for r in rows
    ]


async def list_roads(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    rows = await conn.fetch("SELECT id, name, speed_kmh, oneway, geom FROM roads ORDER BY id")
    return [
        {
            "id": r["id"],
            "name": r["name"],
            "speed_kmh": r["speed_kmh"],
            "oneway": r["oneway"],
            "geometry": _geojson(r["geom"]),
        }
        for r in rows
    ]


async def list_sensors(conn: asyncpg.Connection, limit: int) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """
        SELECT id, kind, name, district_id, location, state, last_seen FROM sensors
        ORDER BY id LIMIT $1
        """,
        limit,
    )
    return [
        {
            "id": r["id"],
            "kind": r["kind"],
            "name": r["name"],
            "district": r["district_id"],
            "lat": r["location"].y if r["location"] is not None else None,
            "lon": r["location"].x if r["location"] is not None else None,
            "state": r["state"],
            "last_seen": r["last_seen"].isoformat() if r["last_seen"] else None,
        }
        for r in rows
    ]


async def list_dead_letters(conn: asyncpg.Connection, limit: int) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """
        SELECT id, source, topic, payload, payload_size, reason, received_at FROM dead_letters
        ORDER BY id DESC LIMIT $1
        """,
        limit,
    )
    return [
        {
            "id": r["id"],
            "source": r["source"],
            "topic": r["topic"],
            # Shown as text where it is text; bad bytes are replaced, not hidden.
            "payload": bytes(r["payload"]).decode("utf-8", errors="replace"),
            "payload_size": r["payload_size"],
            "reason": r["reason"],
            "received_at": r["received_at"].isoformat(),
        }
        for r in rows
    ]
