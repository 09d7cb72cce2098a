"""GET /api/incidents/{id}/recommendation on the demo city: plan, units by ETA, supplies, places."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import aiohttp
import asyncpg
from shapely.geometry import Point

from command import accounts
from command.demo_city import build_city
from command.seed import seed_demo
from tests.integration.helpers import (
    PASSWORD,
    alarm,
    console,
    publisher,
    running_server,
    seed_minimal,
    settings_for,
)


async def _incident(conn: asyncpg.Connection, kind: str, severity: str, point: Point) -> int:
    incident_id: int = await conn.fetchval(
        """
        INSERT INTO incidents (kind, category, severity, location, title, opened_at, updated_at)
        VALUES ($1, 'accident', $2, $3, 'test', now(), now()) RETURNING id
        """,
        kind,
        severity,
        point,
    )
    return incident_id


async def test_recommendation_on_the_demo_city(
    database_url: str, mqtt_url: str, conn: asyncpg.Connection
) -> None:
    city = build_city()
    await seed_demo(conn, city)
    tokens = await seed_minimal_users(database_url)
    await conn.execute("UPDATE units SET position_at = now()")
    centre = city.districts[0].geom.representative_point()
    minor = await _incident(conn, "fire", "Minor", centre)
    extreme = await _incident(conn, "fire", "Extreme", centre)
    hazard = city.hazards[0]
    at_hazard = await _incident(conn, "gas_leak", "Severe", hazard.geom.representative_point())
    settings = settings_for(database_url, mqtt_url)
    base = f"http://{settings.http_host}:{settings.http_port}"
    async with running_server(settings), aiohttp.ClientSession() as http:
        bodies = {}
        for incident_id in (minor, extreme):
            async with http.get(
                f"{base}/api/incidents/{incident_id}/recommendation",
                headers={"Authorization": f"Bearer {tokens['commander']}"},
            ) as r:
                assert r.status == 200, await r.text()
                bodies[incident_id] = await r.json()
        async with http.get(
            f"{base}/api/incidents/{at_hazard}", headers={"Authorization": f"Bearer {tokens['commander']}"}
        ) as r:
            detail = await r.json()
        async with http.get(
            f"{base}/api/incidents/{minor}/recommendation",
            headers={"Authorization": f"Bearer {tokens['field']}"},
        ) as r:
            assert r.status == 404  # out of a field account's scope: it does not exist for it

    # The incident detail names the hazard it sits on, at distance 0.
    assert {"id": hazard.id, "distance_m": 0}.items() <= detail["hazards"][0].items()
    assert isinstance(detail["sites"], list)
    small, big = bodies[minor], bodies[extreme]
    assert small["plan"]["kind"] == "fire" and small["district"] == city.districts[0].id
    # Escalation: the Extreme fire's plan needs more units than the Minor one's.
    needed = lambda body: sum(a["needed"] for a in body["assignments"])  # noqa: E731
    assert needed(big) > needed(small)
    for body in (small, big):
        chosen = [u for a in body["assignments"] for u in a["chosen"]]
        assert chosen, body
        assert len({u["id"] for u in chosen}) == len(chosen)
        etas = [u["eta_s"] for a in body["assignments"] for u in a["chosen"]]
        assert all(isinstance(e, int) and e >= 0 for e in etas)
        for a in body["assignments"]:
            assert [u["eta_s"] for u in a["chosen"]] == sorted(u["eta_s"] for u in a["chosen"])
    assert isinstance(big["hazards"], list) and isinstance(big["sites"], list)
    for place in big["hazards"] + big["sites"]:
        assert place["distance_m"] <= big["plan"]["radius_m"]
    assert "shortfalls" in big


async def seed_minimal_users(database_url: str) -> dict[str, str]:
    """A commander and a field account (bound to a demo unit), with tokens."""
    conn = await asyncpg.connect(database_url)
    try:
        unit = await conn.fetchval("SELECT id FROM units ORDER BY id LIMIT 1")
        await accounts.add_user(conn, username="commander", password=PASSWORD, role="commander")
        await accounts.add_user(conn, username="field", password=PASSWORD, role="field", unit_id=unit)
        tokens = {}
        for name in ("commander", "field"):
            session = await accounts.login(conn, name, PASSWORD, datetime.now(UTC), timedelta(hours=1))
            assert session is not None
            tokens[name] = session.token
        return tokens
    finally:
        await conn.close()


async def test_no_route_no_units_is_a_shortfall_not_an_error(
    database_url: str, mqtt_url: str, conn: asyncpg.Connection
) -> None:
    tokens = await seed_minimal(database_url)
    settings = settings_for(database_url, mqtt_url)
    base = f"http://{settings.http_host}:{settings.http_port}"
    async with (
        running_server(settings),
        console(settings, tokens["commander"]) as ws,
        publisher(mqtt_url) as pub,
    ):
        await ws.receive()
        await pub.publish("sensors/S-1/alarm", alarm("r-1", kind="hazmat", severity="Extreme"))
        opened = await ws.until("incident.opened")
        async with (
            aiohttp.ClientSession() as http,
            http.get(
                f"{base}/api/incidents/{opened['data']['id']}/recommendation",
                headers={"Authorization": f"Bearer {tokens['commander']}"},
            ) as r,
        ):
            assert r.status == 200
            body = await r.json()
    assert body["plan"]["kind"] == "hazmat"
    # seed_minimal has one fire engine and no roads: nothing covers a hazmat plan.
    assert body["shortfalls"], body
    assert all(s["message"] for s in body["shortfalls"])
    assert datetime.now(UTC)  # the request answered promptly; timing is measured in bench/, not here
