"""Storm check: 20,000 alarms from 400 sensors in three areas become exactly three incidents.

The three areas are of one hazard family (smoke and fire), so nothing but
distance tells them apart: grouping by family alone would make one incident,
and a radius too large would merge them.
"""

from __future__ import annotations

import asyncio
import json
import random
from datetime import UTC, datetime, timedelta

import aiohttp
import asyncpg
import pytest
from prometheus_client.parser import text_string_to_metric_families
from shapely.geometry import MultiPoint, Point

from command import db
from command.correlation import distance_m, parse_rules
from command.settings import Settings, load
from tests.integration.helpers import base_url, publisher, running_server, settings_for

FIRE = parse_rules(load({}).correlation_rules_path.read_text()).family_of("smoke")
ALARM_KINDS = ("smoke", "fire")  # two kinds, one family
# Centres about 900 m apart (a triangle): the areas' edges are some 650 m
# apart, beyond the 300 m fire radius, but well within a few radii.
AREAS = [(30.2500, 120.1000), (30.2500, 120.1095), (30.2582, 120.1047)]
SPREAD = 0.0008  # degrees either way: an area is about 180 x 150 m, within the radius
SENSORS = 400
ALARMS = 20_000


async def _ingest_batches(settings: Settings) -> tuple[float, float]:
    """(transactions, alarms in them) from the server's /metrics; the counters
    move just after each commit, so wait until they account for every alarm."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while True:
        async with aiohttp.ClientSession() as http, http.get(f"{base_url(settings)}/metrics") as r:
            text = await r.text()
        samples = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
        count, total = (
            samples["emergency_ingest_batch_size_count"],
            samples["emergency_ingest_batch_size_sum"],
        )
        if total >= ALARMS or loop.time() > deadline:
            return count, total
        await asyncio.sleep(0.05)


async def _wait_for_count(conn: asyncpg.Connection, expected: int, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (count := await conn.fetchval("SELECT count(*) FROM alarms")) < expected:
        assert loop.time() < deadline, f"only {count} of {expected} alarms stored"
        await asyncio.sleep(0.2)


# 20,000 QoS 1 alarms through the shipped broker settings (the broker saves on
# every change, ~800 alarms/s end to end here) take 25-40 s on a quiet 2-core
# machine; a shared CI machine can take several times that.
@pytest.mark.timeout(420)
async def test_storm_becomes_three_incidents(database_url: str, mqtt_url: str) -> None:
    rng = random.Random(3)
    conn = await asyncpg.connect(database_url)
    await db.register_codecs(conn)
    sensors: list[tuple[str, int]] = []
    places: list[Point] = []
    for n in range(SENSORS):
        area = n % len(AREAS)
        lat, lon = AREAS[area]
        sensors.append((f"ST-{n:03d}", area))
        places.append(Point(lon + rng.uniform(-SPREAD, SPREAD), lat + rng.uniform(-SPREAD, SPREAD)))
    # The geometry the test relies on, checked rather than trusted: an area
    # fits within the radius (so it is one incident whatever the order), and
    # each sensor is beyond the radius of every other area's extent.
    hulls = [
        MultiPoint([p for (_, a), p in zip(sensors, places, strict=True) if a == area]).convex_hull
        for area in range(len(AREAS))
    ]
    for hull in hulls:
        west, south, east, north = hull.bounds
        assert distance_m(south, west, Point(east, north)) < FIRE.radius_m
    for (_, area), place in zip(sensors, places, strict=True):
        for other, hull in enumerate(hulls):
            assert other == area or distance_m(place.y, place.x, hull) > FIRE.radius_m
    await conn.executemany(
        "INSERT INTO sensors (id, kind, location) VALUES ($1, 'smoke', $2)",
        [(sensor_id, place) for (sensor_id, _), place in zip(sensors, places, strict=True)],
    )

    settings = settings_for(database_url, mqtt_url)
    start = datetime.now(UTC) - timedelta(seconds=60)
    per_area_alarms = [0, 0, 0]
    per_area_sensors: list[set[str]] = [set(), set(), set()]
    try:
        async with running_server(settings), publisher(mqtt_url) as pub:
            infos = []
            for i in range(ALARMS):
                sensor_id, area = sensors[i % SENSORS]
                doc = {
                    "id": f"storm-{i}",
                    # Each sensor reports smoke, then fire, then smoke...
                    "kind": ALARM_KINDS[(i // SENSORS) % 2],
                    "severity": rng.choice(["Minor", "Moderate", "Severe"]),
                    # Spread over one minute, like a real storm.
                    "time": (start + timedelta(seconds=60 * i / ALARMS)).isoformat(),
                }
                per_area_alarms[area] += 1
                per_area_sensors[area].add(sensor_id)
                infos.append(pub.publish_nowait(f"sensors/{sensor_id}/alarm", json.dumps(doc)))
            await pub.wait_all(infos)
            await _wait_for_count(conn, ALARMS, timeout=360)
            batches, batched = await _ingest_batches(settings)
        # Grouped commits: a transaction takes what arrived while the previous
        # one committed, so a flood is stored in far fewer transactions than alarms.
        assert batched == ALARMS
        assert batches <= ALARMS / 4, f"{batches} transactions for {ALARMS} alarms"

        incidents = await conn.fetch(
            """
            SELECT i.id, i.family, i.alarm_count, i.sensor_count, i.severity,
                   count(a.*) AS alarms, array_agg(DISTINCT a.sensor_id) AS sensors
            FROM incidents i LEFT JOIN alarms a ON a.incident_id = i.id
            GROUP BY i.id ORDER BY i.id
            """
        )
        assert len(incidents) == 3, [dict(r) for r in incidents]
        # Each incident is exactly one area: all of its sensors and alarms, nothing else.
        area_of = dict(sensors)
        for incident in incidents:
            areas = {area_of[s] for s in incident["sensors"]}
            assert len(areas) == 1, f"incident {incident['id']} spans areas {areas}"
            (area,) = areas
            assert set(incident["sensors"]) == per_area_sensors[area]
            assert incident["alarm_count"] == incident["alarms"] == per_area_alarms[area]
            assert incident["sensor_count"] == len(per_area_sensors[area])
            assert (incident["family"], incident["severity"]) == ("fire", "Severe")
        assert sorted(area_of[r["sensors"][0]] for r in incidents) == [0, 1, 2]
        assert await conn.fetchval("SELECT count(*) FROM alarms WHERE incident_id IS NULL") == 0
        assert await conn.fetchval("SELECT count(*) FROM dead_letters") == 0
    finally:
        await conn.close()
