"""Helpers for integration tests: a running server, a real MQTT publisher, a WebSocket console."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import paho.mqtt.client as paho
import websockets
from aiohttp import web
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode
from shapely.geometry import LineString, MultiPolygon, Point, box
from shapely.geometry.base import BaseGeometry

from command import accounts, db
from command.access_log import AccessLogger
from command.app import create_app
from command.broker_accounts import Role
from command.migrations import migrate
from command.services import EmbeddedMosquitto, EmbeddedPostgres, free_port
from command.settings import MqttTarget, Settings, client_id_for

PASSWORD = "correct horse battery"

TEST_MQTT_USERNAME = "emergency-test"


class AdminMosquitto(EmbeddedMosquitto):
    """The embedded broker as tests use it: ``url`` logs in as an all-topics test account.

    One URL lets a test play the server, sensors, units and feeds at once, as
    tests did before the broker required logins. The real roles and their
    narrow ACLs are tested in test_broker_acl.py.
    """

    def __init__(self, directory: Path, *, save_every_change: bool = True) -> None:
        super().__init__(directory, save_every_change=save_every_change)
        self._test_password: str | None = None

    def start(self, port: int | None = None) -> str:
        # Before the broker starts, so it reads the account with the others.
        self._test_password = self.service_password(Role.ADMIN, TEST_MQTT_USERNAME, "test.password")
        super().start(port)
        return self.url

    @property
    def url(self) -> str:
        assert self._test_password is not None, "start the broker first"
        return self.url_for(TEST_MQTT_USERNAME, self._test_password)


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
        client.username_pw_set(target.username, target.password)
        try:
            client.connect(target.host, target.port, clean_start=True)
            client.loop_start()
            client.disconnect()
            client.loop_stop()
        except OSError:
            pass  # the broker is down: its sessions go with it


def settings_for(database_url: str, mqtt_url: str, **overrides: Any) -> Settings:
    instance = f"test-{uuid.uuid4().hex[:8]}"
    base = Settings(
        database_url=database_url,
        mqtt_url=mqtt_url,
        http_port=free_port(),
        # A fresh client id per test: each test has its own database, so it
        # must not inherit another test's persistent session.
        instance=instance,
        # Alone in its share group, so it receives every message as before
        # shared subscriptions (tests of several in-process instances rely on
        # that), and never splits a test's alarms with another test's server.
        mqtt_share_group=instance,
    )
    settings = replace(base, **overrides)
    SESSIONS.append((mqtt_url, settings.mqtt_client_id))
    return settings


def base_url(settings: Settings) -> str:
    """``http://host:port`` of the server ``settings`` describe."""
    return f"http://{settings.http_host}:{settings.http_port}"


@asynccontextmanager
async def running_server(settings: Settings) -> AsyncIterator[web.Application]:
    """The real application on a real port, shut down gracefully at exit."""
    app = create_app(settings)
    runner = web.AppRunner(app, shutdown_timeout=5, access_log_class=AccessLogger)
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


async def seed_city(database_url: str) -> dict[str, str]:
    """seed_minimal plus units U-2 (fire engine), U-3 (ambulance) and U-4 (fire engine, farther),
    depot DEP-1 with 100 pcs of blankets, and school SCH-1 beside S-1. Returns user -> token."""
    tokens = await seed_minimal(database_url)
    conn = await asyncpg.connect(database_url)
    await db.register_codecs(conn)
    try:
        units = [
            ("U-2", "Engine 2", "fire_engine", ["fire_suppression", "rescue"], Point(120.161, 30.261)),
            ("U-3", "Medic 3", "ambulance", ["medical"], Point(120.162, 30.262)),
            ("U-4", "Engine 4", "fire_engine", ["fire_suppression", "rescue"], Point(120.17, 30.27)),
        ]
        await conn.executemany(
            """INSERT INTO units (id, callsign, type, capabilities, position, position_at, district_id)
               VALUES ($1, $2, $3, $4, $5, now(), 'D-1')""",
            units,
        )
        await conn.execute(
            "INSERT INTO depots (id, name, location, district_id) VALUES ('DEP-1', 'North depot', $1, 'D-1')",
            Point(120.15, 30.26),
        )
        await conn.execute(
            "INSERT INTO stock (depot_id, item, quantity, unit) VALUES ('DEP-1', 'blankets', 100, 'pcs')"
        )
        await conn.execute(
            "INSERT INTO sites (id, kind, name, geom) VALUES ('SCH-1', 'school', 'No. 1 School', $1)",
            Point(120.1501, 30.2701),
        )
    finally:
        await conn.close()
    return tokens


async def insert_incident(
    conn: asyncpg.Connection,
    kind: str,
    severity: str,
    *,
    area: BaseGeometry | None = None,
    location: Point | None = None,
    status: str = "confirmed",
) -> int:
    """An incident row written directly (a natural disaster), at ``location`` or the centroid of ``area``."""
    incident: int = await conn.fetchval(
        """
        INSERT INTO incidents (kind, category, severity, status, location, area, title, opened_at, updated_at)
        VALUES ($1, 'natural_disaster', $2, $3, COALESCE($4::geometry, ST_Centroid($5::geometry)), $5,
                'test', now(), now())
        RETURNING id
        """,
        kind,
        severity,
        status,
        location,
        area,
    )
    return incident


async def insert_road(
    conn: asyncpg.Connection, source: int, target: int, a: Point, b: Point, kmh: float, oneway: bool = False
) -> None:
    """A straight road from ``a`` to ``b`` (vertices ``source``, ``target``), its length on the spheroid."""
    line = LineString([a, b])
    length = await conn.fetchval("SELECT ST_Length($1::geometry::geography)", line)
    await conn.execute(
        """
        INSERT INTO roads (source, target, length_m, speed_kmh, oneway, geom)
        VALUES ($1, $2, $3, $4, $5, $6)
        """,
        source,
        target,
        length,
        kmh,
        oneway,
        line,
    )


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
        self._client.username_pw_set(target.username, target.password)
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


class DeviceClient:
    """A device's MQTT client (paho's network thread), recording what the broker answers.

    Blocking: call it through ``asyncio.to_thread`` while a server runs in the loop.
    """

    def __init__(
        self,
        port: int,
        username: str | None,
        password: str | None,
        protocol: MQTTProtocolVersion = paho.MQTTv5,
    ) -> None:
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=f"acl-{uuid.uuid4().hex[:8]}", protocol=protocol
        )
        if username is not None:
            self._client.username_pw_set(username, password)
        self._changed = threading.Condition()
        self.connacks: list[ReasonCode] = []
        self.disconnected = False
        self.pubacks: dict[int, ReasonCode] = {}
        self.subacks: dict[int, list[ReasonCode]] = {}
        self.messages: list[tuple[str, bytes]] = []
        self._client.on_connect = lambda _c, _u, _f, reason, _p: self._note(self.connacks.append, reason)
        self._client.on_disconnect = lambda *_: self._note(
            lambda _: setattr(self, "disconnected", True), None
        )
        self._client.on_publish = lambda _c, _u, mid, reason, _p: self._note(
            lambda r: self.pubacks.__setitem__(mid, r), reason
        )
        self._client.on_subscribe = lambda _c, _u, mid, reasons, _p: self._note(
            lambda r: self.subacks.__setitem__(mid, r), reasons
        )
        self._client.on_message = lambda _c, _u, m: self._note(self.messages.append, (m.topic, m.payload))
        self._client.connect("127.0.0.1", port, keepalive=30)
        self._client.loop_start()

    def _note(self, record: Any, value: Any) -> None:
        with self._changed:
            record(value)
            self._changed.notify_all()

    def wait(self, condition: Any, what: str, timeout: float = 10.0) -> None:
        with self._changed:
            if not self._changed.wait_for(condition, timeout):
                raise AssertionError(f"timed out waiting for {what}")

    def connack(self) -> ReasonCode:
        self.wait(lambda: self.connacks, "CONNACK")
        return self.connacks[0]

    def publish(self, topic: str, payload: bytes | dict[str, Any], qos: int = 1) -> ReasonCode:
        """Publish and return the PUBACK's reason code."""
        data = json.dumps(payload).encode() if isinstance(payload, dict) else payload
        info = self._client.publish(topic, data, qos=qos)
        self.wait(lambda: info.mid in self.pubacks, f"PUBACK for {topic}")
        return self.pubacks[info.mid]

    def subscribe(self, *topics: str) -> list[ReasonCode]:
        """Subscribe at QoS 1 and return the SUBACK's reason code per topic."""
        result, mid = self._client.subscribe([(topic, 1) for topic in topics])
        assert mid is not None, f"SUBSCRIBE not sent: {result}"
        self.wait(lambda: mid in self.subacks, "SUBACK")
        return self.subacks[mid]

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def connected(
    port: int, username: str, password: str, protocol: MQTTProtocolVersion = paho.MQTTv5
) -> DeviceClient:
    """A device logged in as ``username`` (failing the test if the broker refused it)."""
    client = DeviceClient(port, username, password, protocol)
    reason = client.connack()
    if reason.is_failure:
        client.close()
        raise AssertionError(f"{username} refused: {reason}")
    return client


def alarm(alarm_id: str, **fields: Any) -> dict[str, Any]:
    doc = {
        "id": alarm_id,
        "kind": "smoke",
        "severity": "Severe",
        "time": datetime.now(UTC).isoformat(),
    }
    doc.update(fields)
    return doc


class Api:
    """The server's JSON API over one HTTP session, a bearer token per call."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session, self.base = session, base

    async def call(self, method: str, path: str, token: str, body: Any = None) -> tuple[int, dict[str, Any]]:
        headers = {"Authorization": f"Bearer {token}"}
        async with self.session.request(method, self.base + path, json=body, headers=headers) as resp:
            return resp.status, await resp.json()

    async def dispatch(
        self, token: str, incident_id: int, units: list[Any], *, supplies: list[dict[str, Any]] | None = None
    ) -> tuple[int, dict[str, Any]]:
        """POST /api/incidents/{incident_id}/dispatches (``supplies`` only when given)."""
        body: dict[str, Any] = {"units": units}
        if supplies is not None:
            body["supplies"] = supplies
        return await self.call("POST", f"/api/incidents/{incident_id}/dispatches", token, body)


@asynccontextmanager
async def api_for(settings: Settings) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(session, base_url(settings))


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
    async with console_at(base_url(settings), token, since) as opened:
        yield opened


@asynccontextmanager
async def console_at(base_url: str, token: str | None, since: int | None = None) -> AsyncIterator[Console]:
    """A console on the server at ``base_url`` (``http://host:port``), hello sent."""
    url = base_url.replace("http://", "ws://", 1) + "/ws"
    async with websockets.connect(url, open_timeout=10) as ws:
        hello: dict[str, Any] = {"type": "hello"}
        if token is not None:
            hello["token"] = token
        if since is not None:
            hello["since"] = since
        await ws.send(json.dumps(hello))
        yield Console(ws)


# -- private services: a test's own PostgreSQL or broker, to stop and start at will --


@contextmanager
def service_tempdir(prefix: str) -> Iterator[Path]:
    """A temporary folder the postgres and mosquitto accounts can enter, removed afterwards.

    Not pytest's tmp_path: that lives under a 0700 folder the accounts the
    services run as (when we are root) cannot enter.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@asynccontextmanager
async def private_postgres(directory: Path, *, durable: bool) -> AsyncIterator[EmbeddedPostgres]:
    """An embedded PostgreSQL of the test's own in ``directory``/pg, migrated; stopped at exit."""
    pg = EmbeddedPostgres(directory / "pg", durable=durable)
    await asyncio.to_thread(pg.start)
    try:
        conn = await asyncpg.connect(pg.url)
        try:
            await migrate(conn)
        finally:
            await conn.close()
        yield pg
    finally:
        await asyncio.to_thread(pg.stop)


# -- floods: many QoS 1 alarms from one cluster, and what the broker acknowledged --

FLOOD_SENSORS = 20  # all within 100 m: one fire cluster


async def seed_cluster(database_url: str) -> None:
    """Register the ``FLOOD_SENSORS`` sensors ``F-00``... of one cluster."""
    conn = await asyncpg.connect(database_url)
    await db.register_codecs(conn)
    try:
        await conn.executemany(
            "INSERT INTO sensors (id, kind, location) VALUES ($1, 'smoke', $2)",
            [(f"F-{n:02d}", Point(120.15 + n * 0.00002, 30.27)) for n in range(FLOOD_SENSORS)],
        )
    finally:
        await conn.close()


def flood_alarm(n: int) -> tuple[str, str]:
    """Topic and payload of the flood's alarm ``flood-{n}``."""
    doc = {"id": f"flood-{n}", "kind": "smoke", "severity": "Moderate", "time": datetime.now(UTC).isoformat()}
    return f"sensors/F-{n % FLOOD_SENSORS:02d}/alarm", json.dumps(doc)


async def flood(
    pub: Publisher,
    count: int,
    on_half: Callable[[list[paho.MQTTMessageInfo]], Awaitable[None]] | None = None,
) -> list[paho.MQTTMessageInfo]:
    """Publish ``count`` alarms; await ``on_half`` half-way with the message infos published so far."""
    infos: list[paho.MQTTMessageInfo] = []
    for n in range(count):
        topic, payload = flood_alarm(n)
        infos.append(pub.publish_nowait(topic, payload))
        if n == count // 2 and on_half is not None:
            await on_half(infos)
        if n % 200 == 0:
            await asyncio.sleep(0)
    return infos


async def acknowledged_ids(infos: list[paho.MQTTMessageInfo], timeout: float = 60) -> set[str]:
    """The alarm ids the broker acknowledged (waiting for stragglers up to ``timeout``)."""

    def published(info: paho.MQTTMessageInfo) -> bool:
        try:
            return info.is_published()
        except RuntimeError:
            return False  # queued while the client was disconnected: never sent

    def wait() -> set[str]:
        deadline = time.monotonic() + timeout
        for info in infos:
            remaining = deadline - time.monotonic()
            if remaining > 0 and not published(info):
                # RuntimeError: the connection it was queued on is gone.
                with contextlib.suppress(RuntimeError, ValueError):
                    info.wait_for_publish(remaining)
        return {f"flood-{n}" for n, info in enumerate(infos) if published(info)}

    return await asyncio.to_thread(wait)


async def wait_stored(conn: asyncpg.Connection, expected: set[str], timeout: float = 90) -> None:
    """Wait until every alarm id in ``expected`` is stored; fail naming the missing ones."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        stored = {r["alarm_id"] for r in await conn.fetch("SELECT alarm_id FROM alarms")}
        missing = expected - stored
        if not missing:
            return
        if loop.time() > deadline:
            dead = await conn.fetch("SELECT reason FROM dead_letters LIMIT 3")
            raise AssertionError(
                f"{len(missing)} acknowledged alarms never stored, e.g. {sorted(missing)[:5]};"
                f" dead letters: {[r['reason'] for r in dead]}"
            )
        await asyncio.sleep(0.25)


async def assert_exactly_once(conn: asyncpg.Connection, acknowledged: set[str]) -> None:
    """Each alarm stored once, all of ``acknowledged`` among them, and the cluster one incident."""
    rows = await conn.fetch("SELECT sensor_id, alarm_id FROM alarms")
    assert len(rows) == len({(r["sensor_id"], r["alarm_id"]) for r in rows})  # also a DB constraint
    assert {r["alarm_id"] for r in rows} >= acknowledged
    incidents = await conn.fetch("SELECT alarm_count, sensor_count FROM incidents")
    assert len(incidents) == 1, f"one cluster became {len(incidents)} incidents"
    assert incidents[0]["alarm_count"] == len(rows)
    assert incidents[0]["sensor_count"] == FLOOD_SENSORS
    assert await conn.fetchval("SELECT count(*) FROM alarms WHERE incident_id IS NULL") == 0


# -- `emergency serve` subprocesses (SIGKILL-able like a crash) ------------------------

ROOT = Path(__file__).resolve().parents[2]

#: The `emergency` command installed beside this interpreter.
EMERGENCY = str(Path(sys.executable).with_name("emergency"))


def emergency_env(**values: str) -> dict[str, str]:
    """This process's environment without its EMERGENCY_* settings, plus ``values``."""
    return {k: v for k, v in os.environ.items() if not k.startswith("EMERGENCY_")} | values


def up_env(data_dir: Path, port: int, instance: str) -> dict[str, str]:
    """The environment of an `emergency up` keeping its services in ``data_dir``, serving on ``port``."""
    return emergency_env(
        EMERGENCY_DATA_DIR=str(data_dir), EMERGENCY_HTTP_PORT=str(port), EMERGENCY_INSTANCE=instance
    )


def processes_using(data_dir: Path) -> list[str]:
    """The `ps` lines of the processes whose command line names ``data_dir``."""
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if str(data_dir) in line and "ps -eo" not in line]


class ServerProcess:
    """One `emergency serve` subprocess; :func:`server_process` owns its lifetime."""

    def __init__(self, database_url: str, mqtt_url: str, instance: str, share_group: str, log: Path) -> None:
        self.instance = instance
        self.port = free_port()
        self.log = log
        self.env = emergency_env(
            EMERGENCY_DATABASE_URL=database_url,
            EMERGENCY_MQTT_URL=mqtt_url,
            EMERGENCY_HTTP_PORT=str(self.port),
            EMERGENCY_INSTANCE=instance,
            EMERGENCY_MQTT_SHARE_GROUP=share_group,
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, timeout: float = 30.0) -> None:
        """Start (again, under the same name and port) and wait until /healthz says ok."""
        with self.log.open("ab") as log:
            self.proc = await asyncio.to_thread(
                subprocess.Popen,
                [sys.executable, "-m", "command", "serve"],
                env=self.env,
                cwd=ROOT,
                stdout=log,
                stderr=log,
            )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with aiohttp.ClientSession() as http:
            while True:
                assert self.proc.poll() is None, f"{self.instance} exited:\n{self.log_tail()}"
                try:
                    async with http.get(f"{self.url}/healthz", timeout=aiohttp.ClientTimeout(total=2)) as r:
                        if r.status == 200:  # database and broker both connected
                            return
                except (aiohttp.ClientError, TimeoutError):
                    pass
                assert loop.time() < deadline, f"{self.instance} not healthy:\n{self.log_tail()}"
                await asyncio.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: a crash, nothing cleaned up, the MQTT session left as it was."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    async def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (a graceful stop), then SIGKILL if it has not exited within ``timeout``."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(proc.wait, timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@asynccontextmanager
async def server_process(
    database_url: str, mqtt_url: str, log_dir: Path, share_group: str, name: str
) -> AsyncIterator[ServerProcess]:
    """A running `emergency serve` named ``{name}-<random>``, its log in ``log_dir``;
    stopped at exit (SIGTERM, then SIGKILL), even when the test fails."""
    instance = f"{name}-{uuid.uuid4().hex[:6]}"
    # Its persistent broker session outlives the process; the hygiene fixture ends it.
    SESSIONS.append((mqtt_url, client_id_for(instance)))
    server = ServerProcess(database_url, mqtt_url, instance, share_group, log_dir / f"{instance}.log")
    try:
        await server.start()
        yield server
    except BaseException:
        print(f"--- {instance} log ---\n{server.log_tail()}")  # shown by pytest with the failure
        raise
    finally:
        await server.stop()


def share_group() -> str:
    """A group of this test's own: no other test's server may take a share of its alarms."""
    return f"g-{uuid.uuid4().hex[:8]}"
