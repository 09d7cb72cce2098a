"""Unit orders: unit_outbox rows reach units/{id}/dispatch over the real broker, in order,
also when the unit is away and when the broker is down for a while."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from command import db
from command.delivery import Delivery
from command.metrics import Metrics
from command.settings import MqttTarget
from sensors.mqtt import MqttSession
from tests.integration.helpers import SESSIONS, AdminMosquitto, seed_minimal, wait_for_value

UNSENT = "SELECT count(*) FROM unit_outbox WHERE sent_at IS NULL"


class Unit:
    """A field unit's MQTT client: a persistent session subscribed at QoS 1 to its orders."""

    def __init__(self, mqtt_url: str, unit_id: str) -> None:
        self.target = MqttTarget.from_url(mqtt_url)
        self.topic = f"units/{unit_id}/dispatch"
        self.client_id = f"unit-{unit_id}-{uuid.uuid4().hex[:8]}"
        SESSIONS.append((mqtt_url, self.client_id))
        self.received: list[dict[str, Any]] = []
        self.qos: set[int] = set()
        self.session_present: list[bool] = []
        self.subscribed = threading.Event()
        self._client: paho.Client | None = None

    def connect(self) -> None:
        """Connect (blocking: call through asyncio.to_thread) and subscribe on every connect."""
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=paho.MQTTv5)
        client.username_pw_set(self.target.username, self.target.password)
        client.reconnect_delay_set(min_delay=1, max_delay=2)
        client.on_connect = self._on_connect
        client.on_subscribe = lambda *_: self.subscribed.set()
        client.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho: __init__ unannotated
        props.SessionExpiryInterval = 300
        self.subscribed.clear()
        client.connect(self.target.host, self.target.port, clean_start=False, properties=props)
        client.loop_start()
        self._client = client
        if not self.subscribed.wait(10):
            raise AssertionError("the unit never got its SUBACK")

    def disconnect(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.session_present.append(bool(flags.session_present))
        client.subscribe(self.topic, qos=1)

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        self.qos.add(message.qos)
        self.received.append(json.loads(message.payload))

    def seqs(self) -> list[int]:
        return [doc["seq"] for doc in self.received]


@asynccontextmanager
async def unit_online(mqtt_url: str, unit_id: str = "U-1") -> AsyncIterator[Unit]:
    unit = Unit(mqtt_url, unit_id)
    await asyncio.to_thread(unit.connect)
    try:
        yield unit
    finally:
        await asyncio.to_thread(unit.disconnect)


@asynccontextmanager
async def delivering(
    database_url: str, mqtt_url: str
) -> AsyncIterator[tuple[Delivery, MqttSession, Metrics]]:
    """A Delivery on its own pool and MQTT session, run as a named task; stopped at exit."""
    target = MqttTarget.from_url(mqtt_url)
    client_id = f"delivery-{uuid.uuid4().hex[:8]}"
    SESSIONS.append((mqtt_url, client_id))
    pool = await db.create_pool(database_url)
    # MqttSession subscribes on every connect; delivery itself needs no topic.
    session = MqttSession(
        host=target.host,
        port=target.port,
        username=target.username,
        password=target.password,
        client_id=client_id,
        subscriptions=[f"test/{client_id}/none"],
    )
    await session.start()
    metrics = Metrics()
    delivery = Delivery(pool, session, metrics)
    task = asyncio.create_task(delivery.run(), name="delivery")
    try:
        yield delivery, session, metrics
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await session.close()
        await db.close_pool(pool)


async def until(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def add_order(conn: asyncpg.Connection, unit_id: str, seq: int) -> dict[str, Any]:
    doc = {"type": "order", "dispatch_id": None, "unit_id": unit_id, "seq": seq}
    await conn.execute(
        "INSERT INTO unit_outbox (unit_id, payload, created_at) VALUES ($1, $2, now())", unit_id, doc
    )
    return doc


def sent(metrics: Metrics) -> float:
    return float(metrics.unit_orders_sent._value.get())


async def test_an_outbox_row_reaches_the_unit_and_is_marked_sent(
    database_url: str, mqtt_url: str, conn: asyncpg.Connection
) -> None:
    await seed_minimal(database_url)
    async with unit_online(mqtt_url) as unit, delivering(database_url, mqtt_url) as (delivery, _, metrics):
        doc = await add_order(conn, "U-1", 1)
        delivery.wake()
        await until(lambda: len(unit.received) == 1, "the order at the unit")
        await wait_for_value(conn, UNSENT, 0)
        assert unit.received == [doc]
        assert unit.qos == {1}
        sent_at = await conn.fetchval("SELECT sent_at FROM unit_outbox")
        created_at = await conn.fetchval("SELECT created_at FROM unit_outbox")
        assert sent_at >= created_at
        await until(lambda: sent(metrics) == 1, "the sent counter")


async def test_the_broker_keeps_an_order_for_a_unit_that_is_away(
    database_url: str, mqtt_url: str, conn: asyncpg.Connection
) -> None:
    await seed_minimal(database_url)
    unit = Unit(mqtt_url, "U-1")
    await asyncio.to_thread(unit.connect)  # subscribes: the broker now keeps its session
    await asyncio.to_thread(unit.disconnect)
    async with delivering(database_url, mqtt_url) as (delivery, _, _metrics):
        docs = [await add_order(conn, "U-1", n) for n in range(3)]
        delivery.wake()
        # Acknowledged by the broker while the unit is away: the broker owns them now.
        await wait_for_value(conn, UNSENT, 0)
    assert unit.received == []
    await asyncio.to_thread(unit.connect)
    try:
        await until(lambda: len(unit.received) == 3, "the queued orders at the reconnected unit")
        assert unit.session_present == [False, True]
        assert unit.received == docs
    finally:
        await asyncio.to_thread(unit.disconnect)


async def test_orders_written_while_the_broker_is_down_go_out_in_order_when_it_is_back(
    database_url: str, conn: asyncpg.Connection, private_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="command.delivery")
    await seed_minimal(database_url)
    broker = AdminMosquitto(private_dir / "mosquitto", save_every_change=False)
    await asyncio.to_thread(broker.start)
    try:
        async with (
            unit_online(broker.url) as unit,
            delivering(database_url, broker.url) as (delivery, session, metrics),
        ):
            first = await add_order(conn, "U-1", 0)
            delivery.wake()
            await until(lambda: unit.received == [first], "the first order")

            await asyncio.to_thread(broker.stop)  # clean stop: it saves the unit's session
            await until(lambda: not session.connected, "the session to notice the outage")
            docs = [await add_order(conn, "U-1", n) for n in range(1, 21)]
            delivery.wake()

            def stuck() -> bool:
                return any("did not acknowledge" in r.getMessage() for r in caplog.records)

            await until(stuck, "delivery to report the outage")
            assert await conn.fetchval(UNSENT) == 20

            await asyncio.to_thread(broker.start, broker.port)
            await wait_for_value(conn, UNSENT, 0, timeout=30)
            await until(lambda: len(unit.received) >= 21, "the held orders at the unit", timeout=30)
            # Nothing overtook anything, and nothing came twice: while the
            # session was down nothing was published (so paho queued no copies).
            assert unit.seqs() == list(range(21)), unit.seqs()
            assert unit.received[1:] == docs
            # Counted just after the commit that marked them sent.
            await until(lambda: sent(metrics) == 21, "the sent counter")
        warnings = [
            r for r in caplog.records if r.levelno == logging.WARNING and r.name == "command.delivery"
        ]
        assert len(warnings) == 1, [r.getMessage() for r in warnings]  # once per outage, not per round
        assert any("acknowledges again" in r.getMessage() for r in caplog.records)
    finally:
        await asyncio.to_thread(broker.stop)


async def test_two_instances_send_each_order_once_in_order_per_unit(
    database_url: str, mqtt_url: str, conn: asyncpg.Connection
) -> None:
    await seed_minimal(database_url)
    await conn.execute("INSERT INTO units (id, callsign, type) VALUES ('U-2', 'Engine 2', 'fire_engine')")
    count = 240  # more than one batch each
    async with (
        unit_online(mqtt_url, "U-1") as one,
        unit_online(mqtt_url, "U-2") as two,
        delivering(database_url, mqtt_url) as (a, _, metrics_a),
        delivering(database_url, mqtt_url) as (b, _, metrics_b),
    ):
        # Written while both instances deliver, each woken as the API would.
        for n in range(count):
            await add_order(conn, "U-1" if n % 2 == 0 else "U-2", n)
            (a if n % 3 else b).wake()
        await wait_for_value(conn, UNSENT, 0, timeout=30)
        await until(lambda: len(one.received) + len(two.received) >= count, "every order at its unit")
        await until(lambda: sent(metrics_a) + sent(metrics_b) == count, "the sent counters")
        assert one.seqs() == list(range(0, count, 2))
        assert two.seqs() == list(range(1, count, 2))
