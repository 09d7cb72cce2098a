"""Retiring an instance: store what the broker kept in its MQTT session, then end the session.

Why this exists (docs/scaling.md): instances share the ingest through a
shared subscription, each with a persistent session. When one stops without
coming back (SIGKILL, a machine that is gone), Mosquitto 2.0 keeps that
session: the messages that were in flight to it, and its round-robin share
of every new message, stay queued in it, for a client with its client id.
Restarting the instance under the same ``EMERGENCY_INSTANCE`` delivers them.
For an instance that will not return, :func:`drain_session` does it once:

1. connect with the instance's client id, clean start off (the queue is kept);
2. subscribe to a private marker topic, and unsubscribe the session's ingest
   filters (shared and plain): the broker stops adding to its queue and keeps
   what it had queued;
3. publish a marker to ourselves: the broker queues it behind everything it
   holds for this session, which it delivers first in, first out;
4. store and acknowledge what arrives, through the server's own ingest (same
   transaction, same duplicate check), until our marker comes back;
5. unsubscribe the marker topic (its UNSUBACK shows the broker has processed
   all our acknowledgements), then disconnect with session expiry 0: the
   broker deletes the empty session.

A failure before step 5 leaves the session in the broker (without its
subscriptions, so it no longer grows): run the command again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncGenerator
from dataclasses import dataclass, replace

from command import db
from command.correlation import parse_rules
from command.ingest import Ingest
from command.metrics import Metrics
from command.settings import Settings
from sensors.mqtt import Inbound, MqttSession
from sensors.topics import SUBSCRIPTIONS, drain_marker_topic, shared_subscriptions

log = logging.getLogger(__name__)

POLL_S = 1.0


class DrainError(RuntimeError):
    """The drain could not finish; the session is kept in the broker, nothing is lost."""


@dataclass(frozen=True, slots=True)
class DrainReport:
    """What one drain did."""

    client_id: str
    # False: the broker held no session under that client id (a wrong name,
    # or one drained already); then nothing was there to store.
    session_present: bool
    messages: int
    alarms_stored: int
    alarms_duplicate: int
    dead_letters: int


async def drain_session(settings: Settings, instance: str, *, idle_timeout: float = 30.0) -> DrainReport:
    """Store everything the broker holds in ``instance``'s session, then delete the session.

    Run it only for an instance that is stopped for good, while another
    instance serves: a running instance with that name would be taken over
    (and would take its session back), and with no other member in the share
    group new alarms would have no subscriber.

    Args:
        settings: database and broker URLs, share group, ingest settings.
        instance: the retired instance's ``EMERGENCY_INSTANCE``.
        idle_timeout: give up when nothing arrives for this long before the
            end marker does.

    Returns:
        counts of what was stored.

    Raises:
        ValueError: ``instance`` is not a valid instance name.
        DrainError: the broker was unreachable, the connection was lost or
            taken over, or the marker did not come back; the session is kept.
    """
    retired = replace(settings, instance=instance)  # validates the name like EMERGENCY_INSTANCE
    client_id = retired.mqtt_client_id
    assert settings.database_url is not None
    target = settings.mqtt
    rules = parse_rules(settings.correlation_rules_path.read_text())
    pool = await db.create_pool(settings.database_url, min_size=1, max_size=2)
    try:
        session = MqttSession(
            host=target.host,
            port=target.port,
            username=target.username,
            password=target.password,
            client_id=client_id,
            # Nothing renewed on connect: the session keeps what it had, and step 2 trims it.
            subscriptions=(),
            session_expiry_s=settings.session_expiry_s,
            receive_maximum=settings.receive_maximum,
        )
        ended = False
        try:
            await session.start()
            if not session.connected:
                raise DrainError(f"MQTT broker {target.url()} not reachable")
            present = bool(session.session_present)
            ingest = Ingest(pool, session, Metrics(), rules=rules, batch_max=settings.batch_max)
            try:
                counts = await _store_queue(session, ingest, settings, client_id, idle_timeout)
            except (ConnectionError, TimeoutError) as exc:  # a refused or unanswered (UN)SUBSCRIBE
                raise DrainError(f"MQTT: {exc or type(exc).__name__}") from exc
            ended = await session.end_session()
            if not ended:
                raise DrainError("the connection was lost before the session could be ended")
        finally:
            if not ended:
                await session.close()
    finally:
        await db.close_pool(pool)
    return DrainReport(client_id, present, *counts)


async def _store_queue(
    session: MqttSession, ingest: Ingest, settings: Settings, client_id: str, idle_timeout: float
) -> tuple[int, int, int, int]:
    """Steps 2 to 4 and the barrier of step 5. Returns (messages, stored, duplicates, dead letters)."""
    marker_topic = drain_marker_topic(client_id)
    # A marker left by an earlier, interrupted drain may still be queued: ours is told apart by its nonce.
    nonce = secrets.token_hex(8).encode()
    await session.subscribe([marker_topic])
    await session.unsubscribe(shared_subscriptions(settings.mqtt_share_group) + SUBSCRIPTIONS)
    if not await session.publish_confirmed(marker_topic, nonce, timeout=10):
        raise DrainError("the broker did not acknowledge the end marker")
    messages = stored = duplicate = dead = 0
    report_at = 1000
    # aclosing: the generator's cleanup runs when we break out, not at some later collection.
    async with contextlib.aclosing(_batches(session, settings.batch_max, client_id, idle_timeout)) as batches:
        async for batch in batches:
            inbound = [m for m in batch if m.topic != marker_topic]
            if inbound:
                result = await ingest.handle(inbound)
                messages += len(inbound)
                stored += result.alarms_stored
                duplicate += result.alarms_duplicate
                dead += result.dead_letters
            markers = [m for m in batch if m.topic == marker_topic]
            for marker in markers:
                session.ack(marker)
            if any(m.payload == nonce for m in markers):
                break  # everything queued before it is stored and acknowledged
            if messages >= report_at:  # a long queue takes a while: say it moves
                log.info("drain %s: %d messages stored so far", client_id, messages)
                report_at += 1000
    # A barrier before ending: the broker handles one connection's packets in
    # order, so the UNSUBACK means it has processed every PUBACK we sent (a
    # broker that saves on every change can lag far behind). Then the
    # DISCONNECT is all that is left for it to read, and nothing unread on our
    # side turns the close into a reset that would discard it.
    await session.unsubscribe([marker_topic], timeout=idle_timeout)
    return messages, stored, duplicate, dead


async def _batches(
    session: MqttSession, limit: int, client_id: str, idle_timeout: float
) -> AsyncGenerator[list[Inbound], None]:
    """Received batches; raises DrainError on a lost connection or ``idle_timeout`` of silence."""
    # One receiving task, waited on with a timeout but never cancelled by it:
    # cancelling a receive that has just taken messages off the queue would
    # drop them (asyncio.wait_for can, before Python 3.12), and the session
    # would then be ended with them unstored.
    receiving: asyncio.Task[list[Inbound]] | None = None
    idle = 0.0
    try:
        while True:
            # Checked every second, not only when a message comes: if the
            # instance is in fact running, each of us would take the session
            # from the other in turn; stop at the first loss.
            if session.disconnects:
                raise DrainError(
                    f"the connection was lost (taken over by another client {client_id}?"
                    " Is that instance still running?)"
                )
            if receiving is None:
                receiving = asyncio.create_task(session.next_batch(limit), name="drain-receive")
            done, _ = await asyncio.wait({receiving}, timeout=POLL_S)
            if not done:
                idle += POLL_S
                if idle >= idle_timeout:
                    raise DrainError(
                        f"nothing arrived for {idle_timeout:.0f} s and the end marker did not come back"
                    )
                continue
            batch, receiving, idle = receiving.result(), None, 0.0
            yield batch
    finally:
        if receiving is not None:  # leaving on an error: the session is not ended then
            receiving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await receiving
