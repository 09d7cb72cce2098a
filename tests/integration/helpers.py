"""Helpers for integration tests: a running server, a real MQTT publisher, a WebSocket console."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import paho.mqtt.client as paho
import websockets
from aiohttp import web
from paho.mqtt.enums import CallbackAPIVersion
from shapely.geometry import MultiPolygon, Point, box

from command import accounts, db
from command.app import create_app
from command.services import free_port
from command.settings import MqttTarget, Settings

PASSWORD = "correct horse battery"

# Client ids of the server sessions tests created; the hygiene fixture ends
# them after each test. A persistent session left behind would keep queueing
# a copy of every later test's alarms in the broker.
SESSIONS: list[tuple[str, str]] = []


def end_sessions() -> None:
    """Delete the broker sessions tests left (clean start, then session expiry 0)."""
    while SESSIONS:
        mqtt_url, client_id = SESSIONS.pop()
        target = MqttTarget.from_url(mqtt_url)
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
        try:
            client.connect(target.host, target.port, clean_start=True)
            client.loop_start()
            client.disconnect()
            client.loop_stop()
        except OSError:
            pass  # the broker is down: its sessions go with it


def settings_for(database_url: str, mqtt_url: str, **overrides: Any) -> Settings:
    base = Settings(
        database_url=database_url,
        mqtt_url=mqtt_url,
        http_port=free_port(),
        # A fresh client id per test: each test has its own database, so it
        # must not inherit another test's persistent session.
        instance=f"test-{uuid.uuid4().hex[:8]}",
    )
    settings = replace(base, **overrides)
    SESSIONS.append((mqtt_url, settings.mqtt_client_id))
    return settings


@asynccontextmanager
async def running_server(settings: Settings) -> AsyncIterator[web.Application]:
    """The real application on a real port, shut down gracefully at exit."""
    app = create_app(settings)
    runner = web.AppRunner(app, shutdown_timeout=5)
    await runner.setup()
    site = web.TCPSite(runner, settings.http_host, settings.http_port)
    await site.start()
    try:
        yield app
    finally:
        await runner.cleanup()


async def seed_minimal(database_url: str) -> dict[str, str]:
    """One district, two sensors (one with a location), a unit, and users. Returns user -> token."""
    conn = await asyncpg.connect(database_url)
    await db.register_codecs(conn)
    try:
        await conn.execute(
            "INSERT INTO districts (id, name, geom) VALUES ('D-1', 'Test district', $1)",
            MultiPolygon([box(120.0, 30.0, 120.3, 30.5)]),
        )
        await conn.execute(
            "INSERT INTO sensors (id, kind, location, district_id) VALUES ('S-1', 'smoke', $1, 'D-1')",
            Point(120.15, 30.27),
        )
        await conn.execute("INSERT INTO sensors (id, kind) VALUES ('S-2', 'gas')")
        await conn.execute(
            """INSERT INTO units (id, callsign, type, capabilities, position, position_at, district_id)
               VALUES ('U-1', 'Engine 1', 'fire_engine', '{fire_suppression}', $1, now(), 'D-1')""",
            Point(120.16, 30.26),
        )
        tokens = {}
        for role in ("commander", "viewer", "admin"):
            await accounts.add_user(conn, username=role, password=PASSWORD, role=role)
        await accounts.add_user(conn, username="field", password=PASSWORD, role="field", unit_id="U-1")
        for role in ("commander", "viewer", "admin", "field"):
            session = await accounts.login(conn, role, PASSWORD, datetime.now(UTC), timedelta(hours=1))
            assert session is not None
            tokens[role] = session.token
        return tokens
    finally:
        await conn.close()


async def wait_for_value(conn: asyncpg.Connection, sql: str, expected: object, timeout: float = 10.0) -> None:
    """Poll ``sql`` until it returns ``expected``; fail with the last value after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (value := await conn.fetchval(sql)) != expected:
        assert loop.time() < deadline, f"{sql!r} gave {value!r}, expected {expected!r}"
        await asyncio.sleep(0.05)


class Publisher:
    """A real MQTT client publishing with QoS 1 and waiting for the broker's PUBACK."""

    def __init__(self, mqtt_url: str) -> None:
        target = MqttTarget.from_url(mqtt_url)
        self._client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}")
        # Floods queue thousands of QoS 1 messages: let them all be in flight.
        self._client.max_inflight_messages_set(1000)
        self._client.max_queued_messages_set(0)
        self._client.connect(target.host, target.port)
        self._client.loop_start()

    async def publish(self, topic: str, payload: bytes | str | dict[str, Any], qos: int = 1) -> None:
        if isinstance(payload, dict):
            payload = json.dumps(payload)
        info = self._client.publish(topic, payload, qos=qos)
        await asyncio.to_thread(info.wait_for_publish, 10)
        assert info.is_published()

    def publish_nowait(self, topic: str, payload: bytes | str, qos: int = 1) -> paho.MQTTMessageInfo:
        """Queue a publish without waiting for its PUBACK (for floods)."""
        return self._client.publish(topic, payload, qos=qos)

    async def wait_all(self, infos: list[paho.MQTTMessageInfo], timeout: float = 120) -> None:
        """Wait until the broker acknowledged every queued publish."""

        def wait() -> None:
            for info in infos:
                info.wait_for_publish(timeout)
                assert info.is_published()

        await asyncio.to_thread(wait)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@asynccontextmanager
async def publisher(mqtt_url: str) -> AsyncIterator[Publisher]:
    pub = await asyncio.to_thread(Publisher, mqtt_url)
    try:
        yield pub
    finally:
        await asyncio.to_thread(pub.close)


def alarm(alarm_id: str, **fields: Any) -> dict[str, Any]:
    doc = {
        "id": alarm_id,
        "kind": "smoke",
        "severity": "Severe",
        "time": datetime.now(UTC).isoformat(),
    }
    doc.update(fields)
    return doc


class Console:
    """A WebSocket console speaking the feed protocol."""

    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws

    async def receive(self, timeout: float = 10.0) -> dict[str, Any]:
        frame = await asyncio.wait_for(self.ws.recv(), timeout)
        message: dict[str, Any] = json.loads(frame)
        return message

    async def events(self, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The next frame's events (an event frame or a batch)."""
        message = await self.receive(timeout)
        if message["type"] == "batch":
            return list(message["events"])
        assert message["type"] == "event", message
        return [message]

    async def until(self, name: str, timeout: float = 10.0, **match: Any) -> dict[str, Any]:
        """Read events until one named ``name`` whose data matches ``match``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for event in await self.events(max(0.01, deadline - loop.time())):
                if event["name"] == name and all(event["data"].get(k) == v for k, v in match.items()):
                    return event


@asynccontextmanager
async def console(settings: Settings, token: str | None, since: int | None = None) -> AsyncIterator[Console]:
    url = f"ws://{settings.http_host}:{settings.http_port}/ws"
    async with websockets.connect(url, open_timeout=10) as ws:
        hello: dict[str, Any] = {"type": "hello"}
        if token is not None:
            hello["token"] = token
        if since is not None:
            hello["since"] = since
        await ws.send(json.dumps(hello))
        yield Console(ws)
