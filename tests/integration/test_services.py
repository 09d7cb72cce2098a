"""The embedded services `emergency up` runs: private, loopback-only, persistent."""

from __future__ import annotations

import os
from pathlib import Path

import asyncpg
import pytest

from command.services import EmbeddedMosquitto, EmbeddedPostgres, ServiceError, mosquitto_config
from command.settings import MqttTarget


async def test_postgres_data_survives_restart_and_listens_on_loopback(private_dir: Path) -> None:
    pg = EmbeddedPostgres(private_dir / "pg", durable=False)
    url = pg.start()
    try:
        conn = await asyncpg.connect(url)
        await conn.execute("CREATE TABLE kept (v text); INSERT INTO kept VALUES ('still here')")
        assert await conn.fetchval("SHOW listen_addresses") == "127.0.0.1"
        await conn.close()
        pg.stop()
        pg.start()
        conn = await asyncpg.connect(pg.url)
        assert await conn.fetchval("SELECT v FROM kept") == "still here"
        await conn.close()
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(pg.url.replace(pg.password, "wrong"))
    finally:
        pg.stop()


def test_mosquitto_config_has_what_durability_needs(private_dir: Path) -> None:
    config = mosquitto_config(1884, private_dir)
    lines = set(config.splitlines())
    for expected in (
        "listener 1884 127.0.0.1",
        "persistence true",
        "autosave_on_changes true",
        "autosave_interval 1",
        "set_tcp_nodelay true",
    ):
        assert expected in lines
    (queued,) = [line for line in lines if line.startswith("max_queued_messages ")]
    assert int(queued.split()[1]) >= 100_000


def test_mosquitto_starts_and_stops(private_dir: Path) -> None:
    broker = EmbeddedMosquitto(private_dir / "mq")
    broker.start()
    try:
        target = MqttTarget.from_url(broker.url)
        assert (target.username, target.host, target.port) == ("emergency-server", "127.0.0.1", broker.port)
        with pytest.raises(ValueError, match="not a service account"):
            broker.url_for("sensors/S-1", "x")  # a device's "/" would not survive MqttTarget
        assert (private_dir / "mq" / "mosquitto.conf").exists()
    finally:
        broker.stop()


def test_unreachable_data_folder_is_reported_clearly(private_dir: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root hands the services to their own accounts")
    locked = private_dir / "locked"
    locked.mkdir(mode=0o700)
    with pytest.raises(ServiceError, match=r"cannot enter .*locked.*EMERGENCY_DATA_DIR"):
        EmbeddedPostgres(locked / "pg").start()
    with pytest.raises(ServiceError, match=r"cannot enter .*locked"):
        EmbeddedMosquitto(locked / "mq").start()
