"""The ingest loop: MQTT messages in, one transaction per batch, acks after commit.

Batching is natural: each transaction takes every message that arrived while
the previous one was committing (up to ``batch_max``). At low rates that is
one message and no added wait; under load batches grow and the commit cost
is shared, which is what lets one connection store thousands a second.

Failure policy:
- the database is unreachable: nothing is acknowledged; the same batch is
  retried with backoff until it commits. The broker stops sending once
  ``receive_maximum`` messages are unacknowledged, so nothing piles up here.
- the database rejects the batch (a constraint, a value it cannot take): the
  batch is retried one message at a time, and a message that fails alone is
  dead-lettered with the database's reason. A poison message never blocks
  the stream.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Protocol

import asyncpg

from command.correlation import Rules
from command.metrics import Metrics
from command.store import BatchResult, DeadLetter, Raw, store_batch
from sensors.alarms import (
    Alarm,
    Position,
    Rejected,
    StatusReport,
    parse_alarm,
    parse_position,
    parse_state,
    parse_status,
)
from sensors.cap import CapAlert, parse_cap
from sensors.mqtt import Inbound
from sensors.topics import CapFeed, SensorAlarm, SensorState, UnitPosition, UnitStatus, parse_topic

log = logging.getLogger(__name__)

# Errors after which the same batch may succeed later.
TRANSIENT = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.OperatorInterventionError,
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
    asyncpg.InsufficientResourcesError,
)


class MessageSource(Protocol):
    """Where messages come from and how they are acknowledged (sensors/mqtt.py)."""

    async def next_batch(self, limit: int) -> list[Inbound]: ...

    def ack(self, message: Inbound) -> None: ...


class Parsed:
    """One batch, sorted by route. Built by :func:`classify` (pure)."""

    __slots__ = ("alarms", "alerts", "cap_raw", "positions", "rejected", "states", "statuses")

    def __init__(self) -> None:
        self.alarms: list[tuple[Alarm, Raw]] = []
        self.positions: list[tuple[Position, Raw]] = []
        self.statuses: list[tuple[StatusReport, Raw]] = []
        self.states: list[tuple[str, str, Raw]] = []
        # CAP documents are parsed later, off the event loop (see Ingest._commit).
        self.cap_raw: list[tuple[str, Raw]] = []
        self.alerts: list[tuple[str, CapAlert, Raw]] = []
        self.rejected: list[DeadLetter] = []


def parse_alerts(parsed: Parsed) -> None:
    """Parse the batch's CAP documents (CPU-bound: the caller runs it in a thread)."""
    for source, raw in parsed.cap_raw:
        try:
            parsed.alerts.append((source, parse_cap(raw.payload), raw))
        except Rejected as exc:
            parsed.rejected.append(DeadLetter("cap", raw.topic, raw.payload, f"CAP: {exc.reason}"))
        except Exception as exc:  # a parser bug must not block the stream: see classify
            log.exception("CAP parser failed on %s", raw.topic)
            parsed.rejected.append(
                DeadLetter("cap", raw.topic, raw.payload, f"CAP: parser error {exc!r}"[:300])
            )
    parsed.cap_raw.clear()


def classify(messages: Sequence[Inbound], now: datetime) -> Parsed:
    """Parse every message; anything that breaks the contract becomes a dead letter."""
    parsed = Parsed()
    for message in messages:
        raw = Raw(message.topic, message.payload)
        route = parse_topic(message.topic)
        try:
            match route:
                case SensorAlarm(sensor_id):
                    parsed.alarms.append((parse_alarm(sensor_id, message.payload, now), raw))
                case UnitPosition(unit_id):
                    parsed.positions.append((parse_position(unit_id, message.payload, now), raw))
                case UnitStatus(unit_id):
                    parsed.statuses.append((parse_status(unit_id, message.payload, now), raw))
                case CapFeed(source):
                    parsed.cap_raw.append((source, raw))
                case SensorState(sensor_id):
                    parsed.states.append((sensor_id, parse_state(message.payload), raw))
                case None:
                    raise Rejected("topic is not one this server understands")
        except Rejected as exc:
            parsed.rejected.append(DeadLetter("mqtt", message.topic, message.payload, exc.reason))
        except Exception as exc:
            # The parsers promise to raise only Rejected; if one breaks that
            # promise the input is still what broke it. Dead-letter it (and
            # log loudly) rather than retry a batch that can never succeed.
            log.exception("parser failed on %s", message.topic)
            reason = f"parser error {exc!r}"[:300]
            parsed.rejected.append(DeadLetter("mqtt", message.topic, message.payload, reason))
    return parsed


class Ingest:
    """Drains the MQTT queue into the database. ``run`` is a long-lived task."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        source: MessageSource,
        metrics: Metrics,
        *,
        rules: Rules,
        batch_max: int = 500,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._pool = pool
        self._source = source
        self._metrics = metrics
        self._batch_max = batch_max
        self._rules = rules
        self._clock = clock

    async def run(self) -> None:
        while True:
            await self.handle(await self._source.next_batch(self._batch_max))

    async def handle(self, batch: list[Inbound]) -> BatchResult:
        """Store ``batch`` (retrying until it commits or is dead-lettered), then acknowledge it.

        Returns:
            what the transaction(s) stored.
        """
        result = await self._store(batch)
        for message in batch:
            self._source.ack(message)
        self._count(len(batch), result)
        return result

    async def _store(self, batch: list[Inbound]) -> BatchResult:
        """Return only once the batch is committed (or dead-lettered)."""
        delay = 0.1
        while True:
            try:
                return await self._commit(batch)
            except TRANSIENT as exc:
                self._metrics.store_retries.inc()
                log.warning("ingest: database unavailable (%s); retrying in %.1f s", exc, delay)
            except asyncpg.PostgresError as exc:
                if len(batch) == 1:
                    source = await self._dead_letter(batch[0], f"database rejected it: {exc}")
                    return BatchResult(dead_letters=1, cap_dead_letters=int(source == "cap"))
                log.warning("ingest: batch of %d rejected (%s); storing one by one", len(batch), exc)
                results = [await self._store([message]) for message in batch]
                return BatchResult(
                    alarms_stored=sum(r.alarms_stored for r in results),
                    alarms_duplicate=sum(r.alarms_duplicate for r in results),
                    incidents_opened=sum(r.incidents_opened for r in results),
                    dead_letters=sum(r.dead_letters for r in results),
                    cap_dead_letters=sum(r.cap_dead_letters for r in results),
                    alerts_opened=sum(r.alerts_opened for r in results),
                )
            except Exception:
                # A bug of ours, not bad input: dead-lettering would throw the
                # alarms away. They are safe, unacknowledged, in the broker;
                # keep retrying and say so loudly.
                self._metrics.store_retries.inc()
                log.exception("ingest: storing a batch of %d failed; retrying in %.1f s", len(batch), delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _commit(self, batch: list[Inbound]) -> BatchResult:
        now = self._clock()
        parsed = classify(batch, now)
        if parsed.cap_raw:
            # A hostile or huge CAP document can take a sizeable fraction of a
            # second to parse; keep that off the loop the consoles share.
            await asyncio.to_thread(parse_alerts, parsed)
        started = time.perf_counter()
        async with self._pool.acquire() as conn:
            result = await store_batch(
                conn,
                alarms=parsed.alarms,
                positions=parsed.positions,
                statuses=parsed.statuses,
                states=parsed.states,
                alerts=parsed.alerts,
                rejected=parsed.rejected,
                now=now,
                rules=self._rules,
            )
        self._metrics.commit_seconds.observe(time.perf_counter() - started)
        return result

    def _count(self, size: int, result: BatchResult) -> None:
        m = self._metrics
        m.batches.inc()
        m.batch_size.observe(size)
        m.alarms_stored.inc(result.alarms_stored)
        m.alarms_duplicate.inc(result.alarms_duplicate)
        m.incidents_opened.inc(result.incidents_opened)
        if result.dead_letters:
            m.dead_letters.labels("mqtt").inc(result.dead_letters - result.cap_dead_letters)
            m.dead_letters.labels("cap").inc(result.cap_dead_letters)
        m.incidents_opened.inc(result.alerts_opened)

    async def _dead_letter(self, message: Inbound, reason: str) -> str:
        """Store one dead letter, retrying until the database takes it. Returns its source."""
        source = "cap" if message.topic.startswith("cap/") else "mqtt"
        letter = DeadLetter(source, message.topic, message.payload, reason)
        delay = 0.1
        while True:
            try:
                async with self._pool.acquire() as conn:
                    await store_batch(conn, rejected=[letter], now=self._clock())
                return source
            except TRANSIENT as exc:
                log.warning("ingest: cannot store dead letter (%s); retrying", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
