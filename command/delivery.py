"""Unit order delivery: the ``unit_outbox`` table to ``units/{id}/dispatch`` over MQTT.

The dispatch code writes an outbox row in the transaction that creates or
cancels a dispatch; this loop publishes the row at QoS 1 and sets its
``sent_at`` once the broker has acknowledged it. The broker then owns the
order: a unit with a persistent session that is away gets it when it returns.

At-least-once: a crash (or a lost connection) between the broker's PUBACK and
our commit sends the row again, so a unit may see an order twice. The
payload's ``dispatch_id`` is what lets the unit recognise the repeat.

Order per unit: rows go out in id order, one at a time, and a batch stops at
the first row the broker did not acknowledge, so nothing overtakes it.
Across instances the same holds because only one instance delivers at a
time (``DELIVERY_LOCK``).

Woken by :meth:`Delivery.wake` after the API commits an order, and polling
once a second regardless: that picks up rows other instances committed and
rows a crash left unsent, and is the retry interval while the broker is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from command.metrics import Metrics
from sensors.mqtt import MqttSession
from sensors.topics import unit_dispatch_topic

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 1.0
PUBACK_TIMEOUT_S = 5.0
BATCH = 100

# Held from the SELECT to the commit of each batch. Without it, SKIP LOCKED
# alone lets a second instance skip a unit's locked older order and send its
# newer one first. Orders are few, so one sender at a time costs nothing.
DELIVERY_LOCK = 0x756E_6974_6F75_7462  # "unitoutb"


async def lock_delivery(conn: asyncpg.Connection) -> None:
    """Wait until no other instance is delivering (released at commit or rollback)."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", DELIVERY_LOCK)


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One unsent message for a unit: the JSON payload exactly as stored."""

    id: int
    unit_id: str
    payload: bytes


async def fetch_unsent(conn: asyncpg.Connection, limit: int) -> list[OutboxRow]:
    """The oldest unsent rows, in id order, locked until the end of the transaction."""
    # SKIP LOCKED: two senders never hold the same row at once even without
    # DELIVERY_LOCK (which is what keeps the order per unit). payload::text:
    # the stored JSON as it is, whatever codecs the connection has.
    rows = await conn.fetch(
        """
        SELECT id, unit_id, payload::text AS payload FROM unit_outbox
        WHERE sent_at IS NULL ORDER BY id LIMIT $1
        FOR UPDATE SKIP LOCKED
        """,
        limit,
    )
    return [OutboxRow(r["id"], r["unit_id"], r["payload"].encode()) for r in rows]


async def mark_sent(conn: asyncpg.Connection, ids: list[int], now: datetime) -> None:
    await conn.execute("UPDATE unit_outbox SET sent_at = $2 WHERE id = ANY($1::bigint[])", ids, now)


class Delivery:
    """Publishes the unit outbox. ``run`` is a long-lived task; cancel to stop.

    Args:
        pool: the database.
        mqtt: the server's MQTT session (publishing needs no subscription).
        metrics: counts sent orders, when given.
    """

    def __init__(self, pool: asyncpg.Pool, mqtt: MqttSession, metrics: Metrics | None = None) -> None:
        self._pool = pool
        self._mqtt = mqtt
        self._metrics = metrics
        self._wake = asyncio.Event()
        self._wake.set()  # first round at once: a crash may have left rows unsent
        # Each outage is logged when it starts and when it ends, not per round or row.
        self._broker_stuck = False
        self._database_failing = False

    def wake(self) -> None:
        """Deliver now rather than at the next poll (call after committing an outbox row)."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_INTERVAL_S)
            self._wake.clear()
            try:
                await self._drain()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                if not self._database_failing:
                    log.warning("unit orders: reading the outbox failed (%s); retrying", exc)
                self._database_failing = True
            else:
                if self._database_failing:
                    log.info("unit orders: the outbox is readable again")
                self._database_failing = False

    async def _drain(self) -> None:
        """Send batches until the outbox is empty or the broker stops acknowledging."""
        while True:
            sent: list[int] = []
            async with self._pool.acquire() as conn, conn.transaction():
                await lock_delivery(conn)
                rows = await fetch_unsent(conn, BATCH)
                for row in rows:
                    topic = unit_dispatch_topic(row.unit_id)
                    if not await self._mqtt.publish_confirmed(topic, row.payload, PUBACK_TIMEOUT_S):
                        break  # the rows after it wait too: none may overtake it
                    sent.append(row.id)
                if sent:
                    await mark_sent(conn, sent, datetime.now(UTC))
            if sent:
                if self._metrics is not None:
                    self._metrics.unit_orders_sent.inc(len(sent))
                if self._broker_stuck:
                    log.info("unit orders: the broker acknowledges again; delivering")
                self._broker_stuck = False
            if len(sent) < len(rows):
                # Retried at the next wake or poll, never in a busy loop.
                if not self._broker_stuck:
                    log.warning(
                        "unit orders: the broker did not acknowledge unit_outbox row %d;"
                        " holding it and later orders, retrying every %.0f s",
                        rows[len(sent)].id,
                        POLL_INTERVAL_S,
                    )
                self._broker_stuck = True
                return
            if len(rows) < BATCH:
                return
