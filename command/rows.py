"""Row converters: the one place a database row becomes a domain value or wire dict.

The column lists and the converters live together so they cannot drift apart.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from command.incidents import Incident

INCIDENT_COLUMNS = """
    i.id, i.kind, i.category, i.severity, i.status, i.location, i.area,
    i.district_id, i.title, i.alarm_count, i.opened_at, i.updated_at, i.sensor_count, i.source
"""


def incident_from_row(row: asyncpg.Record) -> Incident:
    """Convert at the boundary: a row of INCIDENT_COLUMNS to the domain type."""
    area = row["area"]
    return Incident(
        id=row["id"],
        kind=row["kind"],
        category=row["category"],
        severity=row["severity"],
        status=row["status"],
        lat=row["location"].y if row["location"] is not None else None,
        lon=row["location"].x if row["location"] is not None else None,
        area=area.__geo_interface__ if area is not None else None,
        district=row["district_id"],
        title=row["title"],
        alarm_count=row["alarm_count"],
        opened_at=row["opened_at"],
        updated_at=row["updated_at"],
        sensor_count=row["sensor_count"],
        source=row["source"],
    )


def unit_wire(row: asyncpg.Record) -> dict[str, Any]:
    position = row["position"]
    return {
        "id": row["id"],
        "callsign": row["callsign"],
        "type": row["type"],
        "capabilities": list(row["capabilities"]),
        "status": row["status"],
        "lat": position.y if position is not None else None,
        "lon": position.x if position is not None else None,
        "position_at": row["position_at"].isoformat() if row["position_at"] else None,
        "speed": row["speed"],
        "heading": row["heading"],
        "district": row["district_id"],
    }


UNIT_COLUMNS = """
    u.id, u.callsign, u.type, u.capabilities, u.status, u.position, u.position_at,
    u.speed, u.heading, u.district_id
"""
