"""The broker authenticates every client and keeps each device to its own topics (issue #8).

Against a private broker with the shipped configuration and the real
accounts (not the all-topics test account the other tests use), and the real
server logged in as ``emergency-server``.

What Mosquitto 2.0 makes observable: a refused login gets CONNACK 0x87 (MQTT
5) or 5 (3.1.1); a refused publish gets PUBACK 0x87 with MQTT 5 and a plain
PUBACK with 3.1.1 (the message is dropped either way); a SUBSCRIBE is not
checked by its ``acl_file`` (granted), but nothing the account may not read
is ever delivered on it.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import MQTTProtocolVersion

from command.broker_accounts import SERVER_USERNAME, SIMULATOR_USERNAME, Role
from command.services import EmbeddedMosquitto
from command.settings import MqttTarget
from command.simulator import run_simulator
from tests.integration.helpers import (
    EMERGENCY,
    DeviceClient,
    alarm,
    connected,
    emergency_env,
    running_server,
    seed_minimal,
    service_tempdir,
    settings_for,
    wait_for_value,
)

NOT_AUTHORIZED = 0x87


def refused(
    port: int, username: str | None, password: str | None, protocol: MQTTProtocolVersion = paho.MQTTv5
) -> int:
    """Log in once; return the CONNACK's reason code (raising if the login was accepted)."""
    client = DeviceClient(port, username, password, protocol)
    try:
        reason = client.connack()
    finally:
        client.close()  # stops paho reconnecting with the refused login
    assert reason.is_failure, f"{username} was let in"
    return int(reason.value)


def server_password(broker: EmbeddedMosquitto) -> str:
    password = MqttTarget.from_url(broker.url).password
    assert password is not None
    return password


@pytest.fixture(scope="module")
def broker() -> Iterator[EmbeddedMosquitto]:
    with service_tempdir("emergency-acl-") as path:
        broker = EmbeddedMosquitto(path / "mosquitto", save_every_change=False)
        broker.start()
        try:
            yield broker
        finally:
            broker.stop()


def test_a_client_without_a_valid_login_is_refused(broker: EmbeddedMosquitto, mqtt_url: str) -> None:
    assert refused(broker.port, None, None) == NOT_AUTHORIZED
    assert refused(broker.port, SERVER_USERNAME, "not the password") == NOT_AUTHORIZED
    assert refused(broker.port, "sensors/nobody", "whatever") == NOT_AUTHORIZED
    # MQTT 3.1.1 has return code 5 (not authorised), which paho reports as 0x87 too.
    assert refused(broker.port, None, None, paho.MQTTv311) == NOT_AUTHORIZED
    # And the broker every other test runs against.
    assert refused(MqttTarget.from_url(mqtt_url).port, None, None) == NOT_AUTHORIZED


async def test_a_sensor_publishes_its_own_alarms_and_is_refused_another_sensors(
    broker: EmbeddedMosquitto, database_url: str, conn: asyncpg.Connection
) -> None:
    await seed_minimal(database_url)
    password = (await asyncio.to_thread(broker.set_passwords, Role.SENSOR, ["sensors/S-1"]))["sensors/S-1"]
    position_at = await conn.fetchval("SELECT position_at FROM units WHERE id = 'U-1'")
    forged = alarm("forged", lat=30.27, lon=120.15)
    async with running_server(settings_for(database_url, broker.url)):
        sensor = await asyncio.to_thread(connected, broker.port, "sensors/S-1", password)
        old = await asyncio.to_thread(connected, broker.port, "sensors/S-1", password, paho.MQTTv311)
        try:
            for topic, payload in (("sensors/S-1/alarm", alarm("own-1")), ("sensors/S-1/state", b"online")):
                assert not (await asyncio.to_thread(sensor.publish, topic, payload)).is_failure
            reason = await asyncio.to_thread(sensor.publish, "sensors/S-2/alarm", forged)
            assert reason.value == NOT_AUTHORIZED
            position = {"lat": 30.2, "lon": 120.1, "time": datetime.now(UTC).isoformat()}
            reason = await asyncio.to_thread(sensor.publish, "units/U-1/position", position)
            assert reason.value == NOT_AUTHORIZED
            # MQTT 3.1.1 cannot say no in a PUBACK: the broker acknowledges and drops it.
            assert not (await asyncio.to_thread(old.publish, "sensors/S-2/alarm", forged)).is_failure
            # Sent after the forged one on the same connection, so once it is
            # stored the forged one would have been too, had it been delivered.
            assert not (await asyncio.to_thread(old.publish, "sensors/S-1/alarm", alarm("own-2"))).is_failure
            await wait_for_value(conn, "SELECT count(*) FROM alarms WHERE sensor_id = 'S-1'", 2)
        finally:
            await asyncio.to_thread(sensor.close)
            await asyncio.to_thread(old.close)
    assert await conn.fetchval("SELECT count(*) FROM alarms WHERE sensor_id <> 'S-1'") == 0
    assert await conn.fetchval("SELECT count(*) FROM dead_letters") == 0
    assert await conn.fetchval("SELECT position_at FROM units WHERE id = 'U-1'") == position_at


async def test_a_unit_cannot_report_for_another_unit_nor_read_its_orders(
    broker: EmbeddedMosquitto, database_url: str, conn: asyncpg.Connection
) -> None:
    await seed_minimal(database_url)
    await conn.execute("INSERT INTO units (id, callsign, type) VALUES ('U-2', 'Engine 2', 'fire_engine')")
    password = (await asyncio.to_thread(broker.set_passwords, Role.UNIT, ["units/U-1"]))["units/U-1"]
    status = {"status": "out_of_service", "time": datetime.now(UTC).isoformat()}
    async with running_server(settings_for(database_url, broker.url)):
        unit = await asyncio.to_thread(connected, broker.port, "units/U-1", password)
        server = await asyncio.to_thread(connected, broker.port, SERVER_USERNAME, server_password(broker))
        try:
            own, foreign = await asyncio.to_thread(unit.subscribe, "units/U-1/dispatch", "units/U-2/dispatch")
            assert own.value == 1  # granted QoS 1
            # Mosquitto 2.0's acl_file does not check a SUBSCRIBE: it grants it and
            # filters every delivery by the account's read rules (below). Pinned so
            # that a broker which refuses it (0x87) is noticed: docs/operations.md.
            assert foreign.value == 1
            assert (await asyncio.to_thread(unit.publish, "units/U-2/status", status)).value == NOT_AUTHORIZED
            reason = await asyncio.to_thread(unit.publish, "sensors/S-1/alarm", alarm("from-a-unit"))
            assert reason.value == NOT_AUTHORIZED
            assert not (await asyncio.to_thread(unit.publish, "units/U-1/status", status)).is_failure
            await wait_for_value(conn, "SELECT status FROM units WHERE id = 'U-1'", "out_of_service")

            # The server's login sends each unit an order; U-1 gets only its own,
            # and U-2's, sent first, would have arrived before it.
            for unit_id in ("U-2", "U-1"):
                order = {"order": unit_id}
                reason = await asyncio.to_thread(server.publish, f"units/{unit_id}/dispatch", order)
                assert not reason.is_failure
            await asyncio.to_thread(unit.wait, lambda: unit.messages, "U-1's order")
            assert unit.messages == [("units/U-1/dispatch", b'{"order": "U-1"}')]
            # Nor can the server's login forge what a sensor says.
            reason = await asyncio.to_thread(server.publish, "sensors/S-1/alarm", alarm("from-the-server"))
            assert reason.value == NOT_AUTHORIZED
        finally:
            await asyncio.to_thread(unit.close)
            await asyncio.to_thread(server.close)
    assert await conn.fetchval("SELECT status FROM units WHERE id = 'U-2'") == "available"
    assert await conn.fetchval("SELECT count(*) FROM alarms") == 0


async def test_a_cap_feed_publishes_only_under_its_own_source(
    broker: EmbeddedMosquitto, database_url: str, conn: asyncpg.Connection
) -> None:
    password = (await asyncio.to_thread(broker.set_passwords, Role.CAP_FEED, ["cap/feed-1"]))["cap/feed-1"]
    async with running_server(settings_for(database_url, broker.url)):
        feed = await asyncio.to_thread(connected, broker.port, "cap/feed-1", password)
        try:
            assert (await asyncio.to_thread(feed.publish, "cap/feed-2", b"<alert/>")).value == NOT_AUTHORIZED
            # Not CAP at all: delivered, so dead-lettered, which shows it got through.
            assert not (await asyncio.to_thread(feed.publish, "cap/feed-1", b"not xml")).is_failure
            await wait_for_value(conn, "SELECT count(*) FROM dead_letters", 1)
        finally:
            await asyncio.to_thread(feed.close)
    assert await conn.fetchval("SELECT topic FROM dead_letters") == "cap/feed-1"


def test_a_new_password_or_a_revocation_ends_the_old_login(broker: EmbeddedMosquitto) -> None:
    first = broker.set_password(Role.SENSOR, "sensors/S-7")
    sensor = connected(broker.port, "sensors/S-7", first)
    try:
        second = broker.set_password(Role.SENSOR, "sensors/S-7")
        # The reload re-checks connected clients: the old login is cut at once.
        sensor.wait(lambda: sensor.disconnected, "the old login to be disconnected")
    finally:
        sensor.close()
    assert refused(broker.port, "sensors/S-7", first) == NOT_AUTHORIZED
    connected(broker.port, "sensors/S-7", second).close()

    assert broker.remove_accounts(["sensors/S-7", "sensors/never"]) == ["sensors/S-7"]
    deadline = time.monotonic() + 10
    while True:  # the reload is asynchronous: poll until the broker forgets the account
        client = DeviceClient(broker.port, "sensors/S-7", second)
        reason = client.connack()
        client.close()
        if reason.is_failure:
            break
        assert time.monotonic() < deadline, "a revoked account still logs in"
        time.sleep(0.1)
    for path in broker.directory.iterdir():
        if path.is_file():
            assert second.encode() not in path.read_bytes(), f"a device's password is kept in {path.name}"


async def test_the_demo_simulator_logs_in_with_an_account_of_its_own(
    broker: EmbeddedMosquitto, database_url: str, conn: asyncpg.Connection
) -> None:
    await seed_minimal(database_url)
    target = MqttTarget.from_url(await asyncio.to_thread(broker.simulator_url))
    assert target.username == SIMULATOR_USERNAME
    stop = asyncio.Event()
    async with running_server(settings_for(database_url, broker.url)):
        simulator = asyncio.create_task(
            run_simulator(
                database_url,
                target.host,
                target.port,
                50.0,
                stop,
                mqtt_username=target.username,
                mqtt_password=target.password,
            ),
            name="simulator",
        )
        try:
            await wait_for_value(conn, "SELECT count(*) > 0 FROM alarms WHERE sensor_id = 'S-1'", True, 30)
        finally:
            stop.set()
            await simulator
    assert await conn.fetchval("SELECT count(*) FROM dead_letters") == 0


# -- `emergency sensors add` and `credentials`, as an operator runs them ------------------

LOGIN = re.compile(r"username (\S+)  password (\S+)")


def _emergency(data_dir: Path, database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = emergency_env(EMERGENCY_DATA_DIR=str(data_dir), EMERGENCY_DATABASE_URL=database_url)
    return subprocess.run(
        [EMERGENCY, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


async def test_sensors_add_issues_a_login_that_publishes_and_credentials_rotates_it(
    private_dir: Path, database_url: str, conn: asyncpg.Connection
) -> None:
    # The broker as `emergency up` runs it, in the data folder the commands below are given.
    broker = EmbeddedMosquitto(private_dir / "mosquitto", save_every_change=False)
    await asyncio.to_thread(broker.start)
    try:
        added = await asyncio.to_thread(
            _emergency, private_dir, database_url, "sensors", "add", "--id", "S-9", "--kind", "smoke",
            "--lat", "30.27", "--lon", "120.15",
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
        ((username, password),) = LOGIN.findall(added.stdout)
        assert username == "sensors/S-9"
        for path in (private_dir / "mosquitto").iterdir():
            if path.is_file():
                assert password.encode() not in path.read_bytes(), f"the password is kept in {path.name}"

        async with running_server(settings_for(database_url, broker.url)):
            sensor = await asyncio.to_thread(connected, broker.port, username, password)
            try:
                reason = await asyncio.to_thread(sensor.publish, "sensors/S-9/alarm", alarm("first"))
                assert not reason.is_failure
            finally:
                await asyncio.to_thread(sensor.close)
            await wait_for_value(conn, "SELECT count(*) FROM alarms WHERE sensor_id = 'S-9'", 1)

        rotated = await asyncio.to_thread(
            _emergency, private_dir, database_url, "sensors", "credentials", "S-9"
        )
        assert rotated.returncode == 0, rotated.stderr
        ((_, new_password),) = LOGIN.findall(rotated.stdout)
        assert await asyncio.to_thread(refused, broker.port, username, password) == NOT_AUTHORIZED
        (await asyncio.to_thread(connected, broker.port, username, new_password)).close()

        unknown = await asyncio.to_thread(
            _emergency, private_dir, database_url, "units", "credentials", "U-404"
        )
        assert unknown.returncode != 0 and "not registered: U-404" in unknown.stderr
        colon = await asyncio.to_thread(
            _emergency, private_dir, database_url, "sensors", "add", "--id", "a:b", "--kind", "smoke"
        )
        assert colon.returncode != 0 and "cannot contain ':'" in colon.stderr
        assert await conn.fetchval("SELECT count(*) FROM sensors WHERE id = 'a:b'") == 0
    finally:
        await asyncio.to_thread(broker.stop)
