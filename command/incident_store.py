"""A commander's changes to incidents: the lifecycle, and incidents reported by phone.

Each function is one transaction: the change, its timeline entry and its event.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
from shapely.geometry import Point

from command.dispatch_store import apply_step, set_incident_status
from command.errors import ApiError
from command.incidents import ENDED, InvalidStatusChange, category_of, next_status, to_wire
from command.outbox import NewEvent, append_events
from command.rows import INCIDENT_COLUMNS, incident_from_row
from command.timeline import record
from dispatch import postgis
from dispatch.progress import ACTIVE, cancel_step


async def change_status(
    conn: asyncpg.Connection,
    incident_id: int,
    requested: str,
    *,
    reason: str | None,
    actor: str,
    now: datetime,
) -> dict[str, Any]:
    """Move an incident along its lifecycle (or reopen it).

    A false alarm or a cancelled incident calls back every unit still working
    it (supplies go back to stock); resolving or closing needs every dispatch
    finished first, so no team is forgotten on scene.

    Raises:
        ApiError: 404 unknown; 409 a step the lifecycle does not allow, or
            active dispatches in the way, or a reopened CAP incident whose
            alert has since opened another one.
    """
    async with conn.transaction():
        row = await conn.fetchrow(
            "SELECT status, district_id FROM incidents WHERE id = $1 FOR UPDATE", incident_id
        )
        if row is None:
            raise ApiError(404, "not_found", "no such incident")
        try:
            status = next_status(row["status"], requested, reason)
        except InvalidStatusChange as exc:
            raise ApiError(409, "invalid_transition", str(exc)) from None
        active = await conn.fetch(
            """
            SELECT d.id, d.incident_id, d.unit_id, d.status, i.district_id
            FROM dispatches d JOIN incidents i ON i.id = d.incident_id
            WHERE d.incident_id = $1 AND d.status = ANY($2::text[]) ORDER BY d.unit_id
            FOR UPDATE OF d
            """,
            incident_id,
            sorted(ACTIVE),
        )
        events: list[NewEvent] = []
        if active and status in ("resolved", "closed"):
            units = ", ".join(r["unit_id"] for r in active)
            raise ApiError(409, "dispatches_active", f"clear or cancel the dispatches of {units} first")
        if status in ("false_alarm", "cancelled"):
            for dispatch in active:
                events.extend(
                    await apply_step(
                        conn, dispatch, cancel_step(dispatch["status"]), reason=reason, actor=actor, now=now
                    )
                )
        try:
            async with conn.transaction():  # a savepoint: the unique index may refuse a reopen
                wire = await set_incident_status(conn, incident_id, status, now)
        except asyncpg.UniqueViolationError:
            raise ApiError(
                409,
                "superseded",
                "the alert behind this incident has opened another one since; work on that one",
            ) from None
        await record(
            conn,
            incident_id,
            now,
            actor,
            "reopen" if requested == "reopen" else "status",
            row["status"],
            status,
            {"reason": reason} if reason else {},
        )
        name = "incident.closed" if status in ENDED else "incident.updated"
        events.append(NewEvent(name, wire, incident_id, None, row["district_id"]))
        await append_events(conn, events)
    return wire


async def create_manual(
    conn: asyncpg.Connection,
    *,
    kind: str,
    severity: str,
    location: Point,
    title: str,
    actor: str,
    now: datetime,
) -> dict[str, Any]:
    """An incident from a phone report (the 12345 hotline): it goes through
    the same plans, recommendation and dispatch as a sensor's."""
    async with conn.transaction():
        district = await postgis.district_of(conn, location)
        row = await conn.fetchrow(
            f"""
            INSERT INTO incidents AS i
                (source, kind, category, severity, status, location, district_id, title,
                 opened_at, updated_at, created_by)
            VALUES ('manual', $1, $2, $3, 'confirmed', $4, $5, $6, $7, $7, $8)
            RETURNING {INCIDENT_COLUMNS}
            """,
            kind,
            category_of(kind),
            severity,
            location,
            district,
            title,
            now,
            actor,
        )
        wire = to_wire(incident_from_row(row))
        await record(conn, row["id"], now, actor, "opened", None, "confirmed", {"source": "manual"})
        await append_events(conn, [NewEvent("incident.opened", wire, row["id"], None, district)])
    return wire
