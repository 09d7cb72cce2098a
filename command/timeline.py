"""An incident's timeline: who changed what, and when. Append-only.

The table refuses UPDATE, DELETE and TRUNCATE (migrations/0003_dispatch.sql);
this module only ever inserts and reads.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg


async def record(
    conn: asyncpg.Connection,
    incident_id: int,
    at: datetime,
    actor: str,
    action: str,
    from_status: str | None = None,
    to_status: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Add one entry, in the caller's transaction (the change and its record commit together)."""
    await conn.execute(
        """
        INSERT INTO incident_timeline (incident_id, at, actor, action, from_status, to_status, detail)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        """,
        incident_id,
        at,
        actor,
        action,
        from_status,
        to_status,
        detail or {},
    )


async def timeline(conn: asyncpg.Connection, incident_id: int, limit: int = 1000) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """
        SELECT id, at, actor, action, from_status, to_status, detail
        FROM incident_timeline WHERE incident_id = $1 ORDER BY id LIMIT $2
        """,
        incident_id,
        limit,
    )
    return [
        {
            "id": r["id"],
            "time": r["at"].isoformat(),
            "actor": r["actor"],
            "action": r["action"],
            "from": r["from_status"],
            "to": r["to_status"],
            "detail": r["detail"],
        }
        for r in rows
    ]
