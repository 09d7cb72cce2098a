"""The transactional outbox: every state change writes its console events in its own transaction.

Every instance's feed (command/feed.py) tails the ``events`` table by seq,
woken by NOTIFY; see the table's comment in migrations/0001_schema.sql for
why seq order equals commit order.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

# Held from the first outbox insert to commit, so outbox seqs become visible
# in the order they were assigned (see the events table in 0001_schema.sql).
EVENTS_LOCK = 0x45564E54


@dataclass(frozen=True, slots=True)
class NewEvent:
    name: str
    data: dict[str, Any]
    incident_id: int | None = None
    unit_id: str | None = None
    district_id: str | None = None


async def append_events(conn: asyncpg.Connection, events: Sequence[NewEvent]) -> int | None:
    """Write outbox rows and wake every instance's feed. Call last in a transaction.

    Returns:
        the highest seq written, or None for no events.
    """
    if not events:
        return None
    await conn.execute("SELECT pg_advisory_xact_lock($1)", EVENTS_LOCK)
    rows = await conn.fetch(
        """
        INSERT INTO events (name, data, incident_id, unit_id, district_id)
        SELECT name, data::jsonb, incident_id, unit_id, district_id
        FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[])
             WITH ORDINALITY AS e(name, data, incident_id, unit_id, district_id, ord)
        ORDER BY ord
        RETURNING seq
        """,
        [e.name for e in events],
        [json.dumps(e.data) for e in events],
        [e.incident_id for e in events],
        [e.unit_id for e in events],
        [e.district_id for e in events],
    )
    last: int = max(r["seq"] for r in rows)
    # Delivered at commit, and only then: a listener never hears of a row it cannot read.
    await conn.execute("SELECT pg_notify('events', $1)", str(last))
    return last


async def prune_events(conn: asyncpg.Connection, older_than: datetime) -> int:
    """Delete the outbox's oldest events, written before ``older_than``.

    Only a prefix of seqs goes (what is left stays gap-free, so a replay
    after it is still exact), and the newest event always stays: it is how a
    console's ``since`` is told apart from a seq of some other database.

    Returns:
        how many events were deleted.
    """
    deleted: str = await conn.execute(
        """
        DELETE FROM events WHERE seq <= (
            SELECT max(seq) FROM events
            WHERE created_at < $1 AND seq < (SELECT max(seq) FROM events)
        )
        """,
        older_than,
    )
    return int(deleted.split()[-1])
