"""The outbox tail: every instance reads the events table in seq order and
hands new rows to its hub.

Woken by LISTEN/NOTIFY on channel ``events`` (the payload is just a seq), and
polling once a second regardless, because a notification is lost whenever
the listening connection drops. Correctness never depends on a notification
arriving: only latency does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import asyncpg

from command.feed_protocol import Event
from command.hub import Hub

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 1.0
PAGE = 1000


def event_from_row(row: asyncpg.Record) -> Event:
    return Event.create(
        row["seq"], row["name"], row["data"], row["incident_id"], row["unit_id"], row["district_id"]
    )


async def fetch_events(conn: asyncpg.Connection, after: int, limit: int) -> list[Event]:
    rows = await conn.fetch(
        """
        SELECT seq, name, data, incident_id, unit_id, district_id FROM events
        WHERE seq > $1 ORDER BY seq LIMIT $2
        """,
        after,
        limit,
    )
    return [event_from_row(r) for r in rows]


class Feed:
    """Tails the outbox into a hub. ``run`` is a long-lived task; cancel to stop.

    Args:
        pool: where the outbox is read.
        database_url: where to LISTEN, on a connection of its own, never
            pooled (a LISTEN belongs to one session; see docs/scaling.md on pgbouncer).
        hub: where new events go.
        application_name: the listener's name in ``pg_stat_activity``, so an
            operator (or a test) can find it, e.g. to check every instance listens.
    """

    def __init__(
        self, pool: asyncpg.Pool, database_url: str, hub: Hub, *, application_name: str = "emergency-feed"
    ) -> None:
        self._pool = pool
        self._url = database_url
        self._hub = hub
        self._application_name = application_name
        self._wake = asyncio.Event()
        self.last_seq = 0

    def _on_notify(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        self._wake.set()

    async def start_position(self) -> None:
        """Start after the newest committed event: consoles catch up from the database."""
        async with self._pool.acquire() as conn:
            self.last_seq = await conn.fetchval("SELECT coalesce(max(seq), 0) FROM events")
        self._hub.last_seq = self.last_seq

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(self._listen(), name="feed-listen")
            group.create_task(self._tail(), name="feed-tail")

    async def _tail(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_INTERVAL_S)
            self._wake.clear()
            try:
                await self._drain()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("feed: reading the outbox failed (%s); retrying", exc)
                await asyncio.sleep(POLL_INTERVAL_S)

    async def _drain(self) -> None:
        async with self._pool.acquire() as conn:
            while True:
                events = await fetch_events(conn, self.last_seq, PAGE)
                if not events:
                    return
                self.last_seq = events[-1].seq
                self._hub.publish(events)
                if len(events) < PAGE:
                    return

    async def _listen(self) -> None:
        """Keep one connection listening; reconnect with backoff when it drops."""
        delay = 0.5
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(
                    self._url, server_settings={"application_name": self._application_name}
                )
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _conn, lost=lost: lost.set())
                await conn.add_listener("events", self._on_notify)
                delay = 0.5
                self._wake.set()  # anything committed while we were deaf
                await lost.wait()
                log.warning("feed: LISTEN connection lost; reconnecting")
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("feed: LISTEN connection failed (%s); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
            finally:
                if conn is not None and not conn.is_closed():
                    await conn.close(timeout=2)
