"""Sensor liveness over MQTT, end to end: JSON heartbeats and the retained last will.

A sensor's own MQTT client sets ``offline`` as its retained last will on
``sensors/{id}/state`` and publishes JSON heartbeats there. A heartbeat marks
the sensor online and notes when it was last seen, announcing ``sensor.online``
only on the change; the will, retained by the broker, tells even a server
instance that was not running when the sensor died.
"""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from command.settings import MqttTarget, Settings
from tests.integration.helpers import Console, console, running_server, seed_minimal, settings_for

SENSOR = "S-1"  # registered by seed_minimal
STATE_TOPIC = f"sensors/{SENSOR}/state"
SENSOR_EVENTS = "SELECT name FROM events WHERE name LIKE 'sensor.%' AND data->>'id' = $1 ORDER BY seq"


def mqtt_client(mqtt_url: str, prefix: str) -> tuple[paho.Client, MqttTarget]:
    """A paho client for the broker at ``mqtt_url``, logged in as the URL says (if it says)."""
    target = MqttTarget.from_url(mqtt_url)
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"{prefix}-{uuid.uuid4().hex[:8]}")
    if target.username is not None:
        client.username_pw_set(target.username, target.password)
    return client, target


class SensorClient:
    """A sensor's MQTT client with its retained ``offline`` will, driven by hand.

    No network thread: a thread of paho's own would reconnect after we cut the
    connection, and :meth:`die` must leave exactly as a crashed sensor does,
    without a DISCONNECT (which would discard the will).
    """

    def __init__(self, mqtt_url: str) -> None:
        self._client, target = mqtt_client(mqtt_url, "sensor")
        self._client.will_set(STATE_TOPIC, b"offline", qos=1, retain=True)
        connected: list[bool] = []
        self._client.on_connect = lambda *_: connected.append(True)
        self._client.connect(target.host, target.port, keepalive=60)
        self._pump(lambda: bool(connected), "CONNACK")
        self.alive = True

    def _pump(self, done: Any, what: str) -> None:
        for _ in range(100):
            self._client.loop(timeout=0.1)
            if done():
                return
        raise AssertionError(f"the sensor never got its {what}")

    def heartbeat(self, doc: dict[str, Any]) -> None:
        """Publish one JSON heartbeat with QoS 1 and wait for the broker's PUBACK."""
        info = self._client.publish(STATE_TOPIC, json.dumps(doc), qos=1)
        self._pump(info.is_published, "PUBACK")

    def die(self) -> None:
        """Drop the connection without a DISCONNECT: the broker publishes the will."""
        sock = self._client.socket()
        assert isinstance(sock, socket.socket)
        sock.shutdown(socket.SHUT_RDWR)
        sock.close()
        self.alive = False

    def close(self) -> None:
        """Leave cleanly if still connected: a DISCONNECT makes the broker drop the will,
        which would otherwise be published (and retained) whenever this socket dies."""
        if self.alive:
            self._client.disconnect()
            self.alive = False


def retained_state(mqtt_url: str) -> tuple[bytes, bool]:
    """What a client subscribing now gets first on the state topic: (payload, retain flag)."""
    client, target = mqtt_client(mqtt_url, "probe")
    got: list[tuple[bytes, bool]] = []
    client.on_message = lambda _c, _u, message: got.append((bytes(message.payload), bool(message.retain)))
    client.connect(target.host, target.port)
    client.subscribe(STATE_TOPIC, qos=1)
    try:
        for _ in range(100):
            client.loop(timeout=0.1)
            if got:
                return got[0]
        raise AssertionError(f"nothing retained on {STATE_TOPIC}")
    finally:
        client.disconnect()


def clear_retained(mqtt_url: str) -> None:
    """Delete the retained state (an empty retained message), or it would reach
    every later test's server as the state of a sensor it does not know."""
    client, target = mqtt_client(mqtt_url, "clear")
    client.connect(target.host, target.port)
    client.loop_start()
    try:
        info = client.publish(STATE_TOPIC, b"", qos=1, retain=True)
        info.wait_for_publish(10)
        assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


async def sensor_events_until(ws: Console, name: str, timeout: float = 10.0) -> list[str]:
    """Names of this sensor's events on the console, up to and including the first ``name``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    seen: list[str] = []
    while True:
        for event in await ws.events(max(0.01, deadline - loop.time())):
            if event["name"].startswith("sensor.") and event["data"]["id"] == SENSOR:
                seen.append(event["name"])
                if event["name"] == name:
                    assert event["data"]["state"] == name.removeprefix("sensor.")
                    return seen


async def last_seen_after(conn: asyncpg.Connection, after: datetime, timeout: float = 10.0) -> datetime:
    """Wait until the sensor's last_seen moves past ``after``; return it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        seen: datetime | None = await conn.fetchval("SELECT last_seen FROM sensors WHERE id = $1", SENSOR)
        if seen is not None and seen > after:
            return seen
        assert loop.time() < deadline, f"last_seen is still {seen}, not after {after}"
        await asyncio.sleep(0.05)


async def test_json_heartbeats_mark_online_once_and_the_retained_will_marks_offline(
    database_url: str, mqtt_url: str, conn: asyncpg.Connection
) -> None:
    tokens = await seed_minimal(database_url)
    assert tuple(await conn.fetchrow("SELECT state, last_seen FROM sensors WHERE id = $1", SENSOR)) == (
        "unknown",
        None,
    )
    token = tokens["commander"]
    try:
        sensor = await asyncio.to_thread(SensorClient, mqtt_url)
        try:
            await _heartbeats(settings_for(database_url, mqtt_url), sensor, conn, token)
            # The sensor dies while no server is running, and the next one is a
            # new instance (a fresh MQTT session, so nothing was queued for it):
            # only the broker's retained will can tell it.
            await asyncio.to_thread(sensor.die)
        finally:
            await asyncio.to_thread(sensor.close)
        # Retained before the next server subscribes, so that is how it learns.
        assert await asyncio.to_thread(retained_state, mqtt_url) == (b"offline", True)
        second = settings_for(database_url, mqtt_url)
        # The server may read the retained will before the console says hello, so
        # the console resumes from the last seq it could have seen: then the event
        # reaches it as a replay or live, never hidden inside a snapshot.
        seen = await conn.fetchval("SELECT max(seq) FROM events")
        async with running_server(second), console(second, token, since=seen) as ws:
            assert await sensor_events_until(ws, "sensor.offline") == ["sensor.offline"]
    finally:
        await asyncio.to_thread(clear_retained, mqtt_url)
    assert await conn.fetchval("SELECT state FROM sensors WHERE id = $1", SENSOR) == "offline"
    assert [r["name"] for r in await conn.fetch(SENSOR_EVENTS, SENSOR)] == ["sensor.online", "sensor.offline"]
    assert await conn.fetchval("SELECT count(*) FROM dead_letters") == 0


async def _heartbeats(settings: Settings, sensor: SensorClient, conn: asyncpg.Connection, token: str) -> None:
    """Heartbeats to a running server: online once, last_seen kept fresh."""
    async with running_server(settings), console(settings, token) as ws:
        assert (await ws.receive())["type"] == "snapshot"
        before = datetime.now(UTC)
        # A sensor whose clock is an hour slow: last_seen is when we heard it.
        sensor_clock = (before - timedelta(hours=1)).isoformat()
        await asyncio.to_thread(sensor.heartbeat, {"time": sensor_clock, "battery": 0.93, "rssi": -71})
        assert await sensor_events_until(ws, "sensor.online") == ["sensor.online"]
        row = await conn.fetchrow("SELECT state, last_seen FROM sensors WHERE id = $1", SENSOR)
        assert row["state"] == "online"
        assert before <= row["last_seen"] <= datetime.now(UTC)

        # Later heartbeats move last_seen on and announce nothing: already online.
        seen = row["last_seen"]
        for n in range(2):
            await asyncio.to_thread(sensor.heartbeat, {"time": datetime.now(UTC).isoformat(), "seq": n})
            seen = await last_seen_after(conn, seen)
        assert await conn.fetchval("SELECT state FROM sensors WHERE id = $1", SENSOR) == "online"
        assert [r["name"] for r in await conn.fetch(SENSOR_EVENTS, SENSOR)] == ["sensor.online"]
        assert await conn.fetchval("SELECT count(*) FROM dead_letters") == 0
