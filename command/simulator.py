"""The demo simulator's I/O adapter: PostgreSQL in, MQTT out, the clock.

The scenario itself is pure (``command/simulation.py``); this module reads
the sensors and units once, owns the clock and the sleeping, and publishes
what the simulation returns through a paho-mqtt 2.x client running its own
network thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from command.simulation import SimSensor, Simulation, SimUnit, cruise_speed

log = logging.getLogger(__name__)

LOG_INTERVAL_S = 10.0
CONNECT_TIMEOUT_S = 30.0
CLOSE_TIMEOUT_S = 5.0
# Overflow policy: while the broker is slow or away, paho keeps at most this
# many QoS 1 messages; beyond it publish() refuses and we count a drop. A
# simulator must never grow without bound because a broker stalled.
MAX_QUEUED = 50_000
MAX_INFLIGHT = 1_000  # enough in-flight QoS 1 messages for benchmark rates


@dataclass(slots=True)
class _Outbox:
    """What the publish loop shares with the shutdown path."""

    last_qos1: mqtt.MQTTMessageInfo | None = None
    totals: dict[str, int] = field(
        default_factory=lambda: {"alarms": 0, "positions": 0, "queued": 0, "dropped": 0}
    )


async def load_actors(database_url: str) -> tuple[list[SimSensor], list[SimUnit]]:
    """Read sensors with a location and units with a position or home.

    Coordinates are selected as plain numbers, so the connection needs no
    geometry codec.
    """
    conn = await asyncpg.connect(database_url)
    try:
        sensor_rows = await conn.fetch(
            """
            SELECT id, kind, ST_Y(location) AS lat, ST_X(location) AS lon
            FROM sensors WHERE location IS NOT NULL ORDER BY id
            """
        )
        unit_rows = await conn.fetch(
            """
            SELECT id, type, ST_Y(p) AS lat, ST_X(p) AS lon
            FROM (SELECT id, type, coalesce(position, home) AS p FROM units) AS u
            WHERE p IS NOT NULL ORDER BY id
            """
        )
    finally:
        await conn.close()
    # Records stop here: the pure simulation only ever sees its own types.
    sensors = [SimSensor(r["id"], r["kind"], float(r["lat"]), float(r["lon"])) for r in sensor_rows]
    units = [SimUnit(r["id"], float(r["lat"]), float(r["lon"]), cruise_speed(r["type"])) for r in unit_rows]
    return sensors, units


async def run_simulator(
    database_url: str,
    mqtt_host: str,
    mqtt_port: int,
    rate: float,
    stop: asyncio.Event | None = None,
    mqtt_username: str | None = None,
    mqtt_password: str | None = None,
) -> None:
    """Publish simulated alarms and unit positions until stopped.

    Args:
        database_url: PostgreSQL URL holding the sensors and units (seeded).
        mqtt_host: broker host.
        mqtt_port: broker port.
        rate: average alarms per second over all sensors.
        stop: set it to stop cleanly; cancelling the task works as well.
        mqtt_username: broker user name, if the broker wants one.
        mqtt_password: broker password.

    Raises:
        RuntimeError: the database has no sensors and no units.
        ConnectionError: the broker did not accept a connection within
            ``CONNECT_TIMEOUT_S``.
        ValueError: ``rate`` is negative.
    """
    if not rate >= 0:
        raise ValueError("rate must be >= 0")
    stop = stop if stop is not None else asyncio.Event()
    sensors, units = await load_actors(database_url)
    if not sensors and not units:
        raise RuntimeError("no sensors or units in the database: run `emergency seed-demo` first")
    log.info("simulator: %d sensors, %d units, %.2f alarms/s", len(sensors), len(units), rate)

    loop = asyncio.get_running_loop()
    connected = asyncio.Event()

    def set_connected(up: bool) -> None:
        (connected.set if up else connected.clear)()

    def notify(up: bool) -> None:
        # Called on paho's thread; asyncio objects may only be touched from
        # the loop's own thread. The loop may be gone during shutdown.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(set_connected, up)

    def on_connect(
        _client: mqtt.Client,
        _userdata: Any,
        _flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            log.warning("simulator: broker refused the connection: %s", reason_code)
            return
        log.info("simulator: connected to mqtt://%s:%d", mqtt_host, mqtt_port)
        notify(True)

    def on_disconnect(
        _client: mqtt.Client,
        _userdata: Any,
        _flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        # paho reconnects by itself (loop_start); QoS 1 messages wait in its
        # bounded queue meanwhile.
        log.info("simulator: disconnected from broker: %s", reason_code)
        notify(False)

    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"emergency-simulator-{secrets.token_hex(4)}",
        protocol=mqtt.MQTTv5,
    )
    if mqtt_username is not None:
        client.username_pw_set(mqtt_username, mqtt_password)
    client.max_inflight_messages_set(MAX_INFLIGHT)
    client.max_queued_messages_set(MAX_QUEUED)
    client.reconnect_delay_set(min_delay=1, max_delay=30)
    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    # connect_async + loop_start: the TCP connect happens on paho's thread,
    # never blocking the event loop, and paho retries it on failure.
    client.connect_async(mqtt_host, mqtt_port, keepalive=30)
    client.loop_start()
    outbox = _Outbox()
    try:
        try:
            await asyncio.wait_for(connected.wait(), CONNECT_TIMEOUT_S)
        except TimeoutError:
            raise ConnectionError(
                f"no MQTT connection to {mqtt_host}:{mqtt_port} within {CONNECT_TIMEOUT_S:.0f} s"
            ) from None
        await _publish_loop(client, sensors, units, rate, stop, outbox)
    finally:
        log.info("simulator: stopping; published %s", outbox.totals)
        await _close(client, outbox.last_qos1)


async def _publish_loop(
    client: mqtt.Client,
    sensors: list[SimSensor],
    units: list[SimUnit],
    rate: float,
    stop: asyncio.Event,
    outbox: _Outbox,
) -> None:
    loop = asyncio.get_running_loop()
    # Unseeded on purpose: every demo run tells a different story.
    sim = Simulation(sensors, units, random.Random(), datetime.now(UTC), rate=rate)
    window = dict.fromkeys(outbox.totals, 0)
    next_log = loop.time() + LOG_INTERVAL_S
    while not stop.is_set():
        now = datetime.now(UTC)
        for msg in sim.step(now):
            info = client.publish(msg.topic, msg.payload, qos=msg.qos)
            if info.rc == mqtt.MQTT_ERR_SUCCESS:
                key = "alarms" if msg.topic.endswith("/alarm") else "positions"
            elif info.rc == mqtt.MQTT_ERR_NO_CONN and msg.qos > 0:
                key = "queued"  # kept by paho and sent after the reconnect
            else:
                key = "dropped"
            window[key] += 1
            outbox.totals[key] += 1
            if msg.qos > 0 and key != "dropped":
                outbox.last_qos1 = info
        if loop.time() >= next_log:
            log.info(
                "simulator: last %.0f s published %d alarms, %d positions "
                "(%d queued offline, %d dropped); %d events so far",
                LOG_INTERVAL_S,
                window["alarms"],
                window["positions"],
                window["queued"],
                window["dropped"],
                sim.stats.events,
            )
            window = dict.fromkeys(window, 0)
            next_log += LOG_INTERVAL_S
        delay = (sim.next_deadline(now) - datetime.now(UTC)).total_seconds()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
        else:
            # Behind schedule: still yield, so the loop stays responsive.
            await asyncio.sleep(0)


async def _close(client: mqtt.Client, last_qos1: mqtt.MQTTMessageInfo | None) -> None:
    """Flush briefly, disconnect, stop paho's thread; bounded in time.

    Runs on cancellation too, so every wait here has a bound and the
    blocking paho calls run in a worker thread, never on the loop.
    """
    try:
        if last_qos1 is not None and not last_qos1.is_published():
            # QoS 1 messages complete in order, so the last one acknowledged
            # means the others were too. Errors only mean we cannot flush.
            with contextlib.suppress(ValueError, RuntimeError):
                await asyncio.to_thread(last_qos1.wait_for_publish, CLOSE_TIMEOUT_S)
    finally:
        client.disconnect()
        await asyncio.to_thread(client.loop_stop)
