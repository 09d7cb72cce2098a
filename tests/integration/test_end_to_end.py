"""The walking skeleton: an alarm published over MQTT reaches a console over WebSocket."""

from __future__ import annotations

from datetime import UTC, datetime

import aiohttp
import asyncpg
import pytest
from shapely.geometry import Point, Polygon, shape

from command import db
from tests.integration.helpers import (
    alarm,
    api_for,
    base_url,
    console,
    publisher,
    running_server,
    seed_minimal,
    settings_for,
    wait_for_value,
)


async def test_alarm_reaches_console_after_snapshot_and_rest(database_url: str, mqtt_url: str) -> None:
    tokens = await seed_minimal(database_url)
    settings = settings_for(database_url, mqtt_url)
    async with running_server(settings), console(settings, tokens["commander"]) as ws:
        snapshot = await ws.receive()
        assert snapshot["type"] == "snapshot"
        assert snapshot["incidents"] == []
        assert [u["id"] for u in snapshot["units"]] == ["U-1"]
        start_seq = snapshot["seq"]

        async with publisher(mqtt_url) as pub:
            await pub.publish("sensors/S-1/alarm", alarm("a-1", severity="Moderate"))
            opened = await ws.until("incident.opened")
            # The sensor has a registered location, so the alarm may omit lat/lon.
            await pub.publish("sensors/S-1/alarm", alarm("a-2", severity="Extreme"))
            updated = await ws.until("incident.updated")

        assert opened["seq"] > start_seq
        assert updated["seq"] > opened["seq"]
        incident = opened["data"]
        assert incident["kind"] == "smoke"
        assert incident["category"] == "accident"
        assert incident["status"] == "new"
        assert incident["district"] == "D-1"
        assert (round(incident["lat"], 5), round(incident["lon"], 5)) == (30.27, 120.15)
        assert incident["alarm_count"] == 1
        assert incident["last_alarm"]["sensor_id"] == "S-1"
        assert incident["last_alarm"]["id"] == "a-1"
        assert updated["data"]["id"] == incident["id"]
        assert updated["data"]["alarm_count"] == 2
        assert updated["data"]["severity"] == "Extreme"  # escalates, never silently drops
        assert updated["data"]["last_alarm"]["id"] == "a-2"

        base = base_url(settings)
        headers = {"Authorization": f"Bearer {tokens['commander']}"}
        async with aiohttp.ClientSession(headers=headers) as http:
            async with http.get(f"{base}/api/incidents") as response:
                assert response.status == 200
                listed = (await response.json())["incidents"]
            assert [i["id"] for i in listed] == [incident["id"]]
            async with http.get(f"{base}/api/incidents/{incident['id']}") as response:
                detail = await response.json()
            assert [a["id"] for a in detail["alarms"]] == ["a-2", "a-1"]
            assert [t["name"] for t in detail["events"]] == ["incident.opened", "incident.updated"]
            assert [t["action"] for t in detail["timeline"]] == ["opened"]
            async with http.get(f"{base}/api/incidents/999999") as response:
                assert response.status == 404
                assert (await response.json())["error"]["code"] == "not_found"


async def test_the_incident_area_grows_to_cover_each_sensor_that_joins(
    database_url: str, mqtt_url: str, conn: asyncpg.Connection
) -> None:
    """Fire alarms from four sensors tens of metres apart form one incident. Its
    area is the hull of their positions: none for one point or two (a line), the
    triangle once a third joins, and larger again, still holding the triangle,
    when a fourth sensor outside it joins. GET /api/incidents/{id} serves it."""
    tokens = await seed_minimal(database_url)  # S-1 at (120.15, 30.27)
    await db.register_codecs(conn)
    # About 44 m north, 38 m east, and 90 m north-east of S-1: within the fire family's 300 m.
    others = {"A-2": Point(120.15, 30.2704), "A-3": Point(120.1504, 30.27), "A-4": Point(120.1508, 30.2707)}
    await conn.executemany(
        "INSERT INTO sensors (id, kind, location) VALUES ($1, 'smoke', $2)", list(others.items())
    )
    where = {"S-1": Point(120.15, 30.27)} | others
    settings = settings_for(database_url, mqtt_url)
    async with running_server(settings), publisher(mqtt_url) as pub, api_for(settings) as api:

        async def join(sensor: str, count: int) -> dict[str, object]:
            await pub.publish(f"sensors/{sensor}/alarm", alarm(f"grow-{sensor}", kind="fire"))
            await wait_for_value(conn, "SELECT sum(alarm_count) FROM incidents", count)
            incident_id = await conn.fetchval("SELECT id FROM incidents")
            status, body = await api.call("GET", f"/api/incidents/{incident_id}", tokens["commander"])
            assert status == 200, body
            return body

        one = await join("S-1", 1)
        two = await join("A-2", 2)
        three = await join("A-3", 3)
        four = await join("A-4", 4)

    assert await conn.fetchval("SELECT count(*) FROM incidents") == 1
    assert one["area"] is None and two["area"] is None  # a point, then a line: no area yet
    triangle, grown = shape(three["area"]), shape(four["area"])
    assert isinstance(triangle, Polygon) and isinstance(grown, Polygon)
    for sensor in ("S-1", "A-2", "A-3"):
        assert triangle.covers(where[sensor]), sensor
    assert not triangle.covers(where["A-4"])
    for sensor, point in where.items():
        assert grown.covers(point), sensor
    assert grown.covers(triangle) and grown.area > triangle.area
    # The incident's point follows its area (the hull's centroid).
    assert (four["lon"], four["lat"]) == pytest.approx((grown.centroid.x, grown.centroid.y), abs=1e-9)
    assert (four["alarm_count"], four["sensor_count"]) == (4, 4)


async def test_redelivered_alarm_changes_nothing(
    database_url: str, mqtt_url: str, conn: asyncpg.Connection
) -> None:
    tokens = await seed_minimal(database_url)
    settings = settings_for(database_url, mqtt_url)
    async with running_server(settings), console(settings, tokens["commander"]) as ws:
        await ws.receive()
        async with publisher(mqtt_url) as pub:
            for _ in range(3):
                await pub.publish("sensors/S-1/alarm", alarm("same-id"))
            opened = await ws.until("incident.opened")
            assert opened["data"]["last_alarm"]["id"] == "same-id"
            await pub.publish("sensors/S-1/alarm", alarm("marker"))
            # The copies announced nothing: the next event is the marker's.
            following = await ws.events()
            assert [(e["name"], e["data"]["last_alarm"]["id"]) for e in following] == [
                ("incident.updated", "marker")
            ]
        await wait_for_value(conn, "SELECT count(*) FROM alarms", 2)
        assert await conn.fetchval("SELECT count(*) FROM incidents") == 1
        assert await conn.fetchval("SELECT alarm_count FROM incidents") == 2
        names = await conn.fetch("SELECT name FROM events WHERE name LIKE 'incident.%' ORDER BY seq")
        assert [r["name"] for r in names] == ["incident.opened", "incident.updated"]


async def test_an_alarm_its_event_cannot_follow_is_not_stored_either(
    database_url: str, mqtt_url: str, conn: asyncpg.Connection
) -> None:
    """The alarm, its incident and the outbox event commit together or not at all:
    a console can never miss a change the database holds."""
    await seed_minimal(database_url)
    await conn.execute(
        """
        CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.data -> 'last_alarm' ->> 'id' = 'poison' THEN
                RAISE EXCEPTION 'this event may not be written';
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER poison BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION refuse_poison();
        """
    )
    settings = settings_for(database_url, mqtt_url)
    async with running_server(settings), publisher(mqtt_url) as pub:
        await pub.publish("sensors/S-1/alarm", alarm("poison"))
        await wait_for_value(conn, "SELECT count(*) FROM dead_letters", 1)
        assert "this event may not be written" in await conn.fetchval("SELECT reason FROM dead_letters")
        assert await conn.fetchval("SELECT count(*) FROM alarms") == 0
        assert await conn.fetchval("SELECT count(*) FROM incidents") == 0
        # The stream goes on: the next alarm opens the incident, with its event.
        await pub.publish("sensors/S-1/alarm", alarm("fine"))
        await wait_for_value(conn, "SELECT count(*) FROM alarms", 1)
    assert await conn.fetchval("SELECT alarm_id FROM alarms") == "fine"
    assert await conn.fetchval("SELECT count(*) FROM events WHERE name = 'incident.opened'") == 1


async def test_malformed_payloads_are_dead_lettered_and_server_keeps_serving(
    database_url: str, mqtt_url: str, conn: asyncpg.Connection
) -> None:
    tokens = await seed_minimal(database_url)
    settings = settings_for(database_url, mqtt_url)
    bad = [
        ("sensors/S-1/alarm", b"{not json", "invalid JSON"),
        ("sensors/S-1/alarm", b"\xff\xfe", "not UTF-8"),
        (
            "sensors/S-1/alarm",
            b'{"id": "x", "kind": "volcano", "severity": "Severe", "time": "2026-01-01T00:00:00Z"}',
            "unknown kind",
        ),
        (
            "sensors/S-1/alarm",
            b'{"id": "x", "kind": "fire", "severity": "Severe", "time": "2026-01-01T00:00:00"}',
            "no UTC offset",
        ),
        (
            "sensors/S-1/alarm",
            b'{"id": "x", "kind": "fire", "severity": "Severe", "time": "2026-01-01T00:00:00Z",'
            b' "lat": 91, "lon": 120}',
            "out of range",
        ),
        (
            "sensors/S-1/alarm",
            b'{"id": 7, "kind": "fire", "severity": "Severe", "time": "2026-01-01T00:00:00Z"}',
            "must be a string",
        ),
        ("sensors/S-1/alarm", b"x" * (70 * 1024), "exceeds"),
        (
            "sensors/NOPE/alarm",
            b'{"id": "x", "kind": "fire", "severity": "Severe", "time": "2026-01-01T00:00:00Z",'
            b' "lat": 30, "lon": 120}',
            "unregistered sensor",
        ),
        (
            "sensors/S-2/alarm",
            b'{"id": "x", "kind": "gas_leak", "severity": "Severe", "time": "2026-01-01T00:00:00Z"}',
            "no registered location",
        ),
        ("units/GHOST/position", b'{"lat": 30, "lon": 120, "time": "2026-01-01T00:00:00Z"}', "unknown unit"),
    ]
    async with running_server(settings), console(settings, tokens["commander"]) as ws:
        await ws.receive()
        async with publisher(mqtt_url) as pub:
            for topic, payload, _ in bad:
                await pub.publish(topic, payload)
            # A good alarm after the bad ones still gets through.
            await pub.publish("sensors/S-1/alarm", alarm("good"))
            event = await ws.until("incident.opened")
            assert event["data"]["last_alarm"]["id"] == "good"
        await wait_for_value(conn, "SELECT count(*) FROM dead_letters", len(bad))
        reasons = [r["reason"] for r in await conn.fetch("SELECT reason FROM dead_letters ORDER BY id")]
        for (_, _, expected), reason in zip(bad, reasons, strict=True):
            assert expected in reason, (expected, reason)
        big = await conn.fetchrow(
            "SELECT payload, payload_size FROM dead_letters WHERE reason LIKE '%exceeds%'"
        )
        assert big["payload_size"] == 70 * 1024 and len(big["payload"]) <= 4096

        base = base_url(settings)
        async with aiohttp.ClientSession() as http:
            async with http.get(
                f"{base}/api/dead-letters", headers={"Authorization": f"Bearer {tokens['admin']}"}
            ) as r:
                assert r.status == 200
                assert len((await r.json())["dead_letters"]) == len(bad)
            async with http.get(
                f"{base}/api/dead-letters", headers={"Authorization": f"Bearer {tokens['viewer']}"}
            ) as r:
                assert r.status == 403
            async with http.get(f"{base}/metrics") as r:
                text = await r.text()
            assert f'emergency_dead_letters_total{{source="mqtt"}} {float(len(bad))}' in text
            async with http.get(f"{base}/healthz") as r:
                assert r.status == 200
                health = await r.json()
            assert health["database"] == "ok" and health["broker"] == "ok"


async def test_unit_position_moves_unit_on_console(database_url: str, mqtt_url: str) -> None:
    tokens = await seed_minimal(database_url)
    settings = settings_for(database_url, mqtt_url)
    async with running_server(settings), console(settings, tokens["field"]) as ws:
        snapshot = await ws.receive()
        # A field account sees its own unit and nothing else yet.
        assert [u["id"] for u in snapshot["units"]] == ["U-1"] and snapshot["incidents"] == []
        async with publisher(mqtt_url) as pub:
            await pub.publish(
                "units/U-1/position",
                {"lat": 30.3, "lon": 120.2, "time": datetime.now(UTC).isoformat(), "speed": 12.5},
                qos=0,
            )
            moved = await ws.until("unit.moved")
        assert moved["data"]["id"] == "U-1"
        assert (moved["data"]["lat"], moved["data"]["lon"], moved["data"]["speed"]) == (30.3, 120.2, 12.5)


async def test_api_and_ws_refuse_without_valid_token(database_url: str, mqtt_url: str) -> None:
    tokens = await seed_minimal(database_url)
    settings = settings_for(database_url, mqtt_url)
    base = base_url(settings)
    # unsafe=True: aiohttp's jar otherwise ignores cookies from IP-address hosts.
    jar = aiohttp.CookieJar(unsafe=True)
    async with running_server(settings), aiohttp.ClientSession(cookie_jar=jar) as http:
        for headers in ({}, {"Authorization": "Bearer not-a-token"}):
            async with http.get(f"{base}/api/incidents", headers=headers) as r:
                assert r.status == 401
                assert (await r.json())["error"]["code"] == "unauthorized"
        async with http.post(f"{base}/api/login", json={"username": "commander", "password": "wrong"}) as r:
            assert r.status == 401
        async with http.post(
            f"{base}/api/login", json={"username": "commander", "password": "correct horse battery"}
        ) as r:
            assert r.status == 200
            body = await r.json()
            assert body["role"] == "commander" and body["token"] and body["expires_at"]
            cookie = r.cookies["emergency_session"]
            assert cookie["httponly"] and cookie["samesite"] == "Strict"
        # The cookie set by login authenticates the browser's requests.
        async with http.get(f"{base}/api/incidents") as r:
            assert r.status == 200
        async with http.post(f"{base}/api/logout", headers={"Authorization": f"Bearer {body['token']}"}) as r:
            assert r.status == 200
        async with http.get(
            f"{base}/api/incidents", headers={"Authorization": f"Bearer {body['token']}"}
        ) as r:
            assert r.status == 401

        async with console(settings, "not-a-token") as ws:
            message = await ws.receive()
            assert message == {
                "type": "error",
                "error": {"code": "unauthorized", "message": "a valid token or session cookie is required"},
            }
            await ws.ws.wait_closed()
            assert ws.ws.close_code == 4401
        assert tokens  # the seeded valid tokens exist, so the refusals above are about validity


async def test_console_resumes_from_seq(database_url: str, mqtt_url: str) -> None:
    tokens = await seed_minimal(database_url)
    settings = settings_for(database_url, mqtt_url)
    async with running_server(settings):
        async with console(settings, tokens["commander"]) as ws:
            seq = (await ws.receive())["seq"]
        # Another console watches, so we know both events exist before resuming.
        async with publisher(mqtt_url) as pub, console(settings, tokens["commander"]) as watcher:
            await watcher.receive()
            await pub.publish("sensors/S-1/alarm", alarm("while-away-1"))
            await watcher.until("incident.opened")
            await pub.publish("sensors/S-1/alarm", alarm("while-away-2"))
            await watcher.until("incident.updated")
        async with console(settings, tokens["commander"], since=seq) as ws:
            events = await ws.events()
            # The sensor's first alarm also says it is online.
            assert [e["name"] for e in events] == ["sensor.online", "incident.opened", "incident.updated"]
            assert events[0]["seq"] > seq
            assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
