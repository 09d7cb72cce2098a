"""Storm check: 20,000 alarms from 400 sensors in three areas become exactly three incidents."""

from __future__ import annotations

import asyncio
import json
import random
from datetime import UTC, datetime, timedelta

import asyncpg
from shapely.geometry import Point

from command import db
from tests.integration.helpers import publisher, running_server, settings_for

AREAS = [
    # (centre lat, lon, sensor kind, alarm kinds, spread in degrees)
    (30.25, 120.10, "smoke", ("smoke", "fire"), 0.0008),  # within the 300 m fire radius
    (30.28, 120.20, "water_level", ("water_level", "flood"), 0.005),  # 2 km flood radius
    (30.30, 120.14, "gas", ("gas_leak", "hazmat"), 0.0015),  # 500 m gas radius
]
SENSORS = 400
ALARMS = 20_000


async def _wait_for_count(conn: asyncpg.Connection, expected: int, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (count := await conn.fetchval("SELECT count(*) FROM alarms")) < expected:
        assert loop.time() < deadline, f"only {count} of {expected} alarms stored"
        await asyncio.sleep(0.2)


async def test_storm_becomes_three_incidents(database_url: str, mqtt_url: str) -> None:
    rng = random.Random(3)
    conn = await asyncpg.connect(database_url)
    await db.register_codecs(conn)
    sensors: list[tuple[str, int]] = []
    rows = []
    for n in range(SENSORS):
        area = n % len(AREAS)
        lat, lon, kind, _, spread = AREAS[area]
        sensor_id = f"ST-{n:03d}"
        sensors.append((sensor_id, area))
        rows.append(
            (sensor_id, kind, Point(lon + rng.uniform(-spread, spread), lat + rng.uniform(-spread, spread)))
        )
    await conn.executemany("INSERT INTO sensors (id, kind, location) VALUES ($1, $2, $3)", rows)

    settings = settings_for(database_url, mqtt_url)
    start = datetime.now(UTC) - timedelta(seconds=60)
    per_area_alarms = [0, 0, 0]
    per_area_sensors: list[set[str]] = [set(), set(), set()]
    try:
        async with running_server(settings), publisher(mqtt_url) as pub:
            infos = []
            for i in range(ALARMS):
                sensor_id, area = sensors[i % SENSORS]
                kinds = AREAS[area][3]
                doc = {
                    "id": f"storm-{i}",
                    "kind": kinds[i % 2],
                    "severity": rng.choice(["Minor", "Moderate", "Severe"]),
                    # Spread over one minute, like a real storm.
                    "time": (start + timedelta(seconds=60 * i / ALARMS)).isoformat(),
                }
                per_area_alarms[area] += 1
                per_area_sensors[area].add(sensor_id)
                infos.append(pub.publish_nowait(f"sensors/{sensor_id}/alarm", json.dumps(doc)))
            await pub.wait_all(infos)
            await _wait_for_count(conn, ALARMS, timeout=120)

        incidents = await conn.fetch(
            "SELECT family, alarm_count, sensor_count, severity FROM incidents ORDER BY family"
        )
        assert len(incidents) == 3, incidents
        by_family = {r["family"]: r for r in incidents}
        for area, family in enumerate(["fire", "flood", "gas"]):
            assert by_family[family]["alarm_count"] == per_area_alarms[area]
            assert by_family[family]["sensor_count"] == len(per_area_sensors[area])
            assert by_family[family]["severity"] == "Severe"
        assert await conn.fetchval("SELECT count(*) FROM alarms WHERE incident_id IS NULL") == 0
        assert await conn.fetchval("SELECT count(*) FROM dead_letters") == 0
    finally:
        await conn.close()
