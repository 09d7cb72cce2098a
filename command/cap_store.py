"""CAP alerts in the database: open, update and close incidents from external feeds.

Runs inside the ingest transaction (command/store.py:store_batch). Every CAP
message is recorded once in ``cap_messages`` under its CAP identity
(sender, identifier), so a redelivered document changes nothing, and the
record links the message to the incident it opened or changed. An ``Update``
or ``Cancel`` finds its incident through the records of the messages it
``references``.

Decisions, per the CAP 1.2 specification:
- only ``status`` Actual affects incidents; Exercise, System, Test and Draft
  messages are recorded and otherwise ignored (an exercise must never put a
  real incident on a commander's map);
- ``Alert`` opens an incident;
- ``Update`` changes the incident it references, or opens one when we never
  received the original (the 1.2 earthquake example is such an Update);
- ``Cancel`` cancels the incidents it references; with none known it only
  records itself;
- ``Ack`` and ``Error`` concern the exchange, not the event: recorded only.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg
from shapely.geometry import Point

from command.incidents import AlertRef, Incident
from command.rows import INCIDENT_COLUMNS, incident_from_row
from sensors.cap import CapAlert, to_incident_fields


async def _record(conn: asyncpg.Connection, source: str, alert: CapAlert) -> int | None:
    """Record the message; None when it was recorded before (a redelivery)."""
    row_id: int | None = await conn.fetchval(
        """
        INSERT INTO cap_messages (source, sender, identifier, sent, msg_type, status)
        VALUES ($1, $2, $3, $4, $5, $6)
        ON CONFLICT (sender, identifier) DO NOTHING
        RETURNING id
        """,
        source,
        alert.sender,
        alert.identifier,
        alert.sent,
        alert.msg_type,
        alert.status,
    )
    return row_id


async def _referenced_incidents(conn: asyncpg.Connection, alert: CapAlert) -> list[int]:
    if not alert.references:
        return []
    rows = await conn.fetch(
        """
        SELECT DISTINCT m.incident_id FROM cap_messages m
        JOIN unnest($1::text[], $2::text[]) AS r(sender, identifier)
          ON m.sender = r.sender AND m.identifier = r.identifier
        WHERE m.incident_id IS NOT NULL
        ORDER BY m.incident_id
        """,
        [r.sender for r in alert.references],
        [r.identifier for r in alert.references],
    )
    return [r["incident_id"] for r in rows]


def _values(alert: CapAlert) -> tuple[object, ...]:
    """The incident columns an alert sets, in the order both statements below take them:
    kind, category, severity, urgency, certainty, location, area, title."""
    fields = to_incident_fields(alert)
    point = Point(fields.lon, fields.lat) if fields.lat is not None and fields.lon is not None else None
    return (
        fields.kind,
        fields.category,
        fields.severity,
        fields.urgency,
        fields.certainty,
        point,
        fields.area,
        fields.title[:500],
    )


async def _open(conn: asyncpg.Connection, alert: CapAlert, now: datetime) -> asyncpg.Record:
    row = await conn.fetchrow(
        f"""
        INSERT INTO incidents AS i (source, kind, category, severity, urgency, certainty, status,
                                    location, area, district_id, title, correlation_key,
                                    opened_at, updated_at)
        VALUES ('cap', $1, $2, $3, $4, $5, 'new', $6, $7,
                (SELECT d.id FROM districts d WHERE $6::geometry IS NOT NULL
                                              AND ST_Intersects(d.geom, $6) LIMIT 1),
                $8, $9, $10, $10)
        RETURNING {INCIDENT_COLUMNS}
        """,
        *_values(alert),
        f"cap:{alert.sender}:{alert.identifier}",
        now,
    )
    assert row is not None
    return row


async def _update(
    conn: asyncpg.Connection, incident_id: int, alert: CapAlert, now: datetime
) -> asyncpg.Record | None:
    # An Update replaces what the alert says (a sender may downgrade severity);
    # an update without geometry keeps the geometry we had.
    return await conn.fetchrow(
        f"""
        UPDATE incidents AS i
        SET kind = $2, category = $3, severity = $4, urgency = $5, certainty = $6,
            location = coalesce($7, i.location), area = coalesce($8, i.area), title = $9,
            updated_at = $10
        WHERE i.id = $1 AND i.status NOT IN ('resolved', 'closed', 'false_alarm', 'cancelled')
        RETURNING {INCIDENT_COLUMNS}
        """,
        incident_id,
        *_values(alert),
        now,
    )


async def _cancel(conn: asyncpg.Connection, incident_id: int, now: datetime) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"""
        UPDATE incidents AS i SET status = 'cancelled', closed_at = $2, updated_at = $2
        WHERE i.id = $1 AND i.status NOT IN ('resolved', 'closed', 'false_alarm', 'cancelled')
        RETURNING {INCIDENT_COLUMNS}
        """,
        incident_id,
        now,
    )


async def apply_alert(
    conn: asyncpg.Connection,
    source: str,
    alert: CapAlert,
    now: datetime,
) -> list[tuple[str, Incident, AlertRef]] | str:
    """Apply one CAP message inside the caller's transaction.

    Returns:
        the events to write, as (name, incident, the message); or a string
        saying why the message changed no incident (recorded all the same).
    Raises:
        Rejected: an Alert or Update without an ``info`` block.
    """
    record_id = await _record(conn, source, alert)
    if record_id is None:
        return "already received"
    if alert.status != "Actual":
        return f"status {alert.status}: recorded, not acted on"
    if alert.msg_type in ("Ack", "Error"):
        return f"{alert.msg_type}: recorded, not an event"

    ref = AlertRef(alert.sender, alert.identifier, alert.msg_type, alert.sent)
    events: list[tuple[str, Incident]] = []
    targets = await _referenced_incidents(conn, alert)
    if alert.msg_type == "Cancel":
        for incident_id in targets:
            row = await _cancel(conn, incident_id, now)
            if row is not None:
                events.append(("incident.closed", incident_from_row(row)))
    elif alert.msg_type == "Update" and targets:
        for incident_id in targets:
            row = await _update(conn, incident_id, alert, now)
            if row is not None:
                events.append(("incident.updated", incident_from_row(row)))
    else:
        # An Alert, or an Update of an alert we never received: a reader of
        # the Update still learns of an event, so it opens an incident.
        row = await _open(conn, alert, now)
        events.append(("incident.opened", incident_from_row(row)))

    linked = [incident.id for _, incident in events] or targets
    if linked:
        await conn.execute("UPDATE cap_messages SET incident_id = $2 WHERE id = $1", record_id, linked[0])
    if not events:
        return "references no open incident: recorded"
    return [(name, incident, ref) for name, incident in events]
