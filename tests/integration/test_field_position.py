"""POST /api/my/position against the real server and database: a field team's
phone reporting where the unit is, through the same parser and transaction as
MQTT ``units/{id}/position``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
from shapely.geometry import Point

from command import accounts, db
from command.field_api import POSITION_LIMITER
from command.settings import Settings
from tests.integration.helpers import PASSWORD, console, running_server, seed_minimal, settings_for

HERE = {"lat": 30.2655, "lon": 120.1555}


async def seed(database_url: str) -> dict[str, str]:
    """seed_minimal (field account ``field`` on U-1) plus U-2 with its own field account ``field2``."""
    tokens = await seed_minimal(database_url)
    conn = await asyncpg.connect(database_url)
    await db.register_codecs(conn)
    try:
        await conn.execute(
            """INSERT INTO units (id, callsign, type, capabilities, position, position_at, district_id)
               VALUES ('U-2', 'Engine 2', 'fire_engine', '{fire_suppression}', $1, now(), 'D-1')""",
            Point(120.17, 30.27),
        )
        await accounts.add_user(conn, username="field2", password=PASSWORD, role="field", unit_id="U-2")
        session = await accounts.login(conn, "field2", PASSWORD, datetime.now(UTC), timedelta(hours=1))
        assert session is not None
        tokens["field2"] = session.token
    finally:
        await conn.close()
    return tokens


class Client:
    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session, self.base = session, base

    async def report(
        self, token: str | None, body: Any, *, raw: bytes | None = None
    ) -> tuple[int, dict[str, Any], Mapping[str, str]]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        kwargs: dict[str, Any] = {"data": raw, "headers": headers | {"Content-Type": "application/json"}}
        if raw is None:
            kwargs = {"json": body, "headers": headers}
        async with self.session.post(self.base + "/api/my/position", **kwargs) as resp:
            return resp.status, await resp.json(), resp.headers


@asynccontextmanager
async def client_for(settings: Settings) -> AsyncIterator[Client]:
    async with aiohttp.ClientSession() as session:
        yield Client(session, f"http://{settings.http_host}:{settings.http_port}")


async def unit_row(database_url: str, unit_id: str) -> asyncpg.Record:
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(
            """SELECT ST_Y(position) AS lat, ST_X(position) AS lon, position_at, speed, heading
               FROM units WHERE id = $1""",
            unit_id,
        )
        assert row is not None
        return row
    finally:
        await conn.close()


async def test_a_field_phone_moves_its_unit_and_every_console_sees_unit_moved(
    database_url: str, mqtt_url: str
) -> None:
    tokens = await seed(database_url)
    settings = settings_for(database_url, mqtt_url)
    async with (
        running_server(settings),
        client_for(settings) as client,
        console(settings, tokens["commander"]) as commander,
        console(settings, tokens["field"]) as own,
    ):
        assert (await commander.receive())["type"] == "snapshot"
        assert (await own.receive())["type"] == "snapshot"
        # A second ahead: the seeded position is stamped now() too, and an older report is ignored.
        at = datetime.now(UTC) + timedelta(seconds=1)
        # A unit_id in the body is not how the unit is chosen: the account's unit is.
        body = HERE | {"time": at.isoformat(), "speed": 8.5, "heading": 270.0, "unit_id": "U-2"}
        status, answer, _ = await client.report(tokens["field"], body)
        assert status == 200, answer
        assert answer["unit_id"] == "U-1" and answer["stored"] is True and isinstance(answer["seq"], int)

        for feed in (commander, own):
            event = await feed.until("unit.moved", id="U-1")
            assert event["seq"] == answer["seq"]
            data = event["data"]
            assert (data["lat"], data["lon"], data["speed"], data["heading"]) == (
                HERE["lat"],
                HERE["lon"],
                8.5,
                270.0,
            )
            assert datetime.fromisoformat(data["position_at"]) == at
        row = await unit_row(database_url, "U-1")
        assert (row["lat"], row["lon"], row["position_at"]) == (HERE["lat"], HERE["lon"], at)
        other = await unit_row(database_url, "U-2")
        assert (other["lat"], other["lon"]) == (30.27, 120.17)


async def test_time_is_optional_and_a_late_report_changes_nothing(database_url: str, mqtt_url: str) -> None:
    tokens = await seed(database_url)
    settings = settings_for(database_url, mqtt_url)
    async with running_server(settings) as app, client_for(settings) as client:
        # Only the rate limit's clock is shortened: the reports below are its subject elsewhere.
        app[POSITION_LIMITER].interval_s = 0.0
        before = datetime.now(UTC)
        status, answer, _ = await client.report(tokens["field"], HERE)
        assert status == 200 and answer["stored"] is True, answer
        row = await unit_row(database_url, "U-1")
        assert before <= row["position_at"] <= datetime.now(UTC)
        assert row["speed"] is None and row["heading"] is None

        # Older than what is stored (a report that waited in a tunnel): accepted, not applied.
        late = {"lat": 30.0, "lon": 120.0, "time": (before - timedelta(minutes=5)).isoformat()}
        status, answer, _ = await client.report(tokens["field"], late)
        assert status == 200 and answer == {"unit_id": "U-1", "stored": False, "seq": None}, answer
        assert (await unit_row(database_url, "U-1"))["lat"] == HERE["lat"]


async def test_only_a_field_account_reports_and_bad_reports_are_refused_with_the_reason(
    database_url: str, mqtt_url: str
) -> None:
    tokens = await seed(database_url)
    settings = settings_for(database_url, mqtt_url)
    async with running_server(settings), client_for(settings) as client:
        status, answer, _ = await client.report(None, HERE)
        assert status == 401, answer
        for role in ("commander", "viewer", "admin"):
            status, answer, _ = await client.report(tokens[role], HERE)
            assert status == 403 and answer["error"]["code"] == "forbidden", (role, answer)

        now = datetime.now(UTC)
        refused = [
            ({"lat": 91, "lon": 120}, "lat 91.0 out of range [-90, 90]"),
            ({"lat": 30, "lon": -181}, "lon -181.0 out of range [-180, 180]"),
            ({"lat": 30}, "missing required field 'lat' or 'lon'"),
            ({"lat": True, "lon": 120}, "field 'lat' must be a number, got bool"),
            ({"lat": "30", "lon": 120}, "field 'lat' must be a number, got str"),
            (HERE | {"speed": -1}, "speed is negative"),
            (HERE | {"time": "2024-05-01T10:00:00"}, "field 'time' has no UTC offset: '2024-05-01T10:00:00'"),
            (HERE | {"time": (now + timedelta(hours=2)).isoformat()}, "field 'time' is "),
            ([HERE], "payload must be a JSON object, got list"),
        ]
        for body, reason in refused:
            status, answer, _ = await client.report(tokens["field"], body)
            assert status == 400, (body, answer)
            assert answer["error"]["code"] == "bad_request"
            assert answer["error"]["message"].startswith(reason), (body, answer)
        status, answer, _ = await client.report(tokens["field"], None, raw=b"{not json")
        assert status == 400 and answer["error"]["message"].startswith("invalid JSON"), answer

        # Refused over HTTP means answered, not dead-lettered; and nothing moved.
        conn = await asyncpg.connect(database_url)
        try:
            assert await conn.fetchval("SELECT count(*) FROM dead_letters") == 0
            assert await conn.fetchval("SELECT count(*) FROM events WHERE name = 'unit.moved'") == 0
        finally:
            await conn.close()
        # Refusals did not use up the unit's slot.
        status, answer, _ = await client.report(tokens["field"], HERE)
        assert status == 200 and answer["stored"] is True, answer


async def test_one_report_per_unit_every_two_seconds(database_url: str, mqtt_url: str) -> None:
    tokens = await seed(database_url)
    settings = settings_for(database_url, mqtt_url)
    async with running_server(settings), client_for(settings) as client:
        status, answer, _ = await client.report(tokens["field"], HERE)
        assert status == 200, answer
        status, answer, headers = await client.report(tokens["field"], {"lat": 30.3, "lon": 120.2})
        assert status == 429 and answer["error"]["code"] == "too_many_requests", answer
        assert headers["Retry-After"] in ("1", "2")
        # Another unit has its own allowance.
        status, answer, _ = await client.report(tokens["field2"], {"lat": 30.3, "lon": 120.2})
        assert status == 200 and answer["unit_id"] == "U-2", answer

        await asyncio.sleep(float(headers["Retry-After"]) + 0.1)
        status, answer, _ = await client.report(tokens["field"], {"lat": 30.3, "lon": 120.2})
        assert status == 200 and answer["stored"] is True, answer
        assert (await unit_row(database_url, "U-1"))["lat"] == 30.3
