"""Reads for the response-time KPIs: each incident's timestamps, from PostgreSQL.

The adapter half of dispatch/kpi.py: two plain queries (the incidents with
their earliest alarm, then their dispatches), converted to the pure
:class:`IncidentTimes` here, so no row reaches the KPI code.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

from dispatch.kpi import DispatchTimes, IncidentTimes


async def incident_timings(
    conn: asyncpg.Connection,
    since: datetime,
    until: datetime,
    districts: tuple[str, ...] | None,
) -> list[IncidentTimes]:
    """The incidents opened in ``[since, until)``, with their alarms' start and dispatches.

    Args:
        conn: a connection with the project's codecs (any will do: no geometry is read).
        since: the first instant included (timezone-aware).
        until: the first instant excluded (timezone-aware).
        districts: only incidents in these districts (an incident without a
            district is then excluded), or None for all.

    Returns:
        In order of opening, then id.
    """
    # Both reads see one snapshot, so a dispatch created between them cannot
    # belong to an incident the first read did not return, or vice versa.
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        # min(a.time) per incident is an index lookup (alarms_incident), not
        # a scan of every alarm.
        incidents = await conn.fetch(
            """
            SELECT i.id, i.kind, i.district_id, i.severity, i.status, i.opened_at,
                   (SELECT min(a.time) FROM alarms a WHERE a.incident_id = i.id) AS first_alarm_at
            FROM incidents i
            WHERE i.opened_at >= $1 AND i.opened_at < $2
              AND ($3::text[] IS NULL OR i.district_id = ANY($3::text[]))
            ORDER BY i.opened_at, i.id
            """,
            since,
            until,
            list(districts) if districts is not None else None,
        )
        dispatches = await conn.fetch(
            """
            SELECT d.incident_id, d.unit_id, d.created_at, d.acknowledged_at, d.en_route_at,
                   d.on_scene_at, d.cleared_at, d.declined_at, d.cancelled_at
            FROM dispatches d WHERE d.incident_id = ANY($1::bigint[])
            ORDER BY d.incident_id, d.created_at, d.id
            """,
            [r["id"] for r in incidents],
        )
    by_incident: dict[int, list[DispatchTimes]] = {}
    for d in dispatches:
        by_incident.setdefault(d["incident_id"], []).append(
            DispatchTimes(
                unit_id=d["unit_id"],
                created_at=d["created_at"],
                acknowledged_at=d["acknowledged_at"],
                en_route_at=d["en_route_at"],
                on_scene_at=d["on_scene_at"],
                cleared_at=d["cleared_at"],
                declined_at=d["declined_at"],
                cancelled_at=d["cancelled_at"],
            )
        )
    return [
        IncidentTimes(
            id=r["id"],
            kind=r["kind"],
            district=r["district_id"],
            severity=r["severity"],
            status=r["status"],
            opened_at=r["opened_at"],
            first_alarm_at=r["first_alarm_at"],
            dispatches=tuple(by_incident.get(r["id"], ())),
        )
        for r in incidents
    ]
