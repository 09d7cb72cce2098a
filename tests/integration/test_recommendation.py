"""GET /api/incidents/{id}/recommendation on the demo city: plan, units by ETA, supplies, places."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import pytest
from shapely.geometry import Point, box

from command import accounts
from command.demo_city import build_city
from command.seed import seed_demo
from dispatch.plans import DEFAULT_PLANS_PATH, parse_plans
from dispatch.recommendation import IncidentPlace, recommend_for
from tests.integration.helpers import (
    PASSWORD,
    alarm,
    api_for,
    base_url,
    console,
    insert_incident,
    insert_road,
    publisher,
    running_server,
    seed_minimal,
    settings_for,
    wait_for_value,
)

PLANS = parse_plans(DEFAULT_PLANS_PATH.read_text())


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
    base = base_url(settings)
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
    def needed(body: dict[str, Any]) -> int:
        return sum(a["needed"] for a in body["assignments"])

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
    base = base_url(settings)
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


# --- road closures, as each incident's own plan says ---------------------------------------


async def test_road_closures_follow_each_incidents_plan(conn: asyncpg.Connection) -> None:
    """An ambulance at v1 for a medical call at v2, on a triangle of 36 km/h (10 m/s)
    roads: edge A straight north from v1 to v2 (3,991 m: 399 s), or around
    through v3 (two 4,479 m edges: 896 s). Other incidents close A, or not,
    as their own plan says.

    By hand, from the middle of A (M), in spherical metres as closures
    measure them (1 degree of latitude is 111,195 m, of longitude at 30 N
    96,298 m): A passes through M; v2 is 0.018 * 111195 = 2,001.5 m away;
    the way around leaves v1 towards (4006, 2001.5), direction (0.8946,
    0.4470), so M at (0, 2001.5) is 2001.5 * 0.8946 = 1,790.5 m from it.
    (Road lengths are on the spheroid, hence 3,991 m rather than 4,003.)
    """
    v1, v2, v3 = Point(120.0, 30.0), Point(120.0, 30.036), Point(120.0416, 30.018)
    await insert_road(conn, 1, 2, v1, v2, 36)
    await insert_road(conn, 1, 3, v1, v3, 36)
    await insert_road(conn, 3, 2, v3, v2, 36)
    middle_of_a = Point(120.0, 30.018)
    distances = await conn.fetch(
        """
        SELECT ST_Distance(geom::geography, $1::geometry::geography, false) AS m FROM roads
        UNION ALL SELECT ST_Distance($2::geometry::geography, $1::geometry::geography, false)
        """,
        middle_of_a,
        v2,
    )
    assert [r["m"] for r in distances] == pytest.approx([0, 1790.5, 1790.5, 2001.5], abs=1)
    await conn.execute(
        """
        INSERT INTO units (id, callsign, type, capabilities, position, position_at)
        VALUES ('AMB-1', 'Ambulance 1', 'ambulance', '{medical}', $1, now())
        """,
        v1,
    )
    call = await insert_incident(conn, "medical", "Unknown", location=v2)
    place = IncidentPlace(call, "medical", "Unknown", v2, None)

    async def eta() -> int | None:
        body = await recommend_for(
            conn, place, PLANS, now=datetime.now(UTC), position_max_age=timedelta(minutes=15)
        )
        units = [u for a in body["assignments"] for u in (*a["chosen"], *a["alternates"])]
        if not units:
            # Unreachable by road: never listed, and the need is short.
            assert [(f["key"], f["available"]) for f in body["shortfalls"]] == [("medical", 0)], body
            return None
        assert [u["id"] for u in units] == ["AMB-1"], body
        value: int | None = units[0]["eta_s"]
        assert value is not None
        return value

    direct, around = 399, 896  # whole seconds, as the API answers
    assert await eta() == direct

    # A Moderate fire's plan keeps roads open: its area across A changes nothing.
    assert not PLANS.plan_for("fire", "Moderate").closes_roads
    assert PLANS.plan_for("fire", "Severe").closes_roads
    fire = await insert_incident(conn, "fire", "Moderate", area=box(119.999, 30.017, 120.001, 30.019))
    assert await eta() == direct
    # The same fire upgraded to Severe closes A.
    await conn.execute("UPDATE incidents SET severity = 'Severe' WHERE id = $1", fire)
    assert await eta() == around
    # Ended, it closes nothing.
    await conn.execute("UPDATE incidents SET status = 'resolved' WHERE id = $1", fire)
    assert await eta() == direct

    # Incidents reported as a point on A, without an area: their plan's
    # radius stands for the area. A collapse (100 m) and a flood (500 m)
    # close A; neither reaches the way around.
    for kind in ("structure_collapse", "flood"):
        plan = PLANS.plan_for(kind, "Unknown")
        assert plan.closes_roads and plan.radius_m < 1790, kind
        incident = await insert_incident(conn, kind, "Unknown", location=middle_of_a)
        assert await eta() == around, kind
        await conn.execute("UPDATE incidents SET status = 'cancelled' WHERE id = $1", incident)
        assert await eta() == direct, kind

    # A flood at v3 closes the way around as well: unreachable.
    flood = await insert_incident(conn, "flood", "Unknown", location=middle_of_a)
    await insert_incident(conn, "flood", "Unknown", location=v3)
    assert await eta() is None
    # The flood at M grows to Extreme: its 3 km radius now holds the call
    # itself, and a zone the call lies in cannot be avoided, so it closes
    # nothing for this trip (the flood at v3 still closes the way around).
    extreme = PLANS.plan_for("flood", "Extreme")
    assert extreme.closes_roads and extreme.radius_m > 2002
    await conn.execute("UPDATE incidents SET severity = 'Extreme' WHERE id = $1", flood)
    assert await eta() == direct


# --- escalation through the real path ------------------------------------------------------


async def test_the_recommendation_grows_when_a_correlated_alarm_raises_the_severity(
    database_url: str, mqtt_url: str, conn: asyncpg.Connection
) -> None:
    """A Moderate fire alarm opens an incident; an Extreme one from a sensor 50 m
    away joins it (correlation raises the severity), and the recommendation
    served over HTTP switches to the Extreme plan and asks for more."""
    city = build_city()
    await seed_demo(conn, city)
    tokens = await seed_minimal_users(database_url)
    await conn.execute("UPDATE units SET position_at = now()")
    here = city.districts[0].geom.representative_point()
    nearby = await conn.fetchval("SELECT ST_Project($1::geometry::geography, 50, 0)::geometry", here)
    await conn.executemany(
        "INSERT INTO sensors (id, kind, location) VALUES ($1, 'smoke', $2)",
        [("ESC-1", here), ("ESC-2", nearby)],
    )
    settings = settings_for(database_url, mqtt_url)
    base = base_url(settings)

    async with running_server(settings), publisher(mqtt_url) as pub, aiohttp.ClientSession() as http:

        async def recommendation(incident_id: int) -> dict[str, Any]:
            async with http.get(
                f"{base}/api/incidents/{incident_id}/recommendation",
                headers={"Authorization": f"Bearer {tokens['commander']}"},
            ) as r:
                assert r.status == 200, await r.text()
                body: dict[str, Any] = await r.json()
                return body

        await pub.publish("sensors/ESC-1/alarm", alarm("esc-1", kind="fire", severity="Moderate"))
        await wait_for_value(conn, "SELECT count(*) FROM incidents", 1)
        incident_id = await conn.fetchval("SELECT id FROM incidents")
        before = await recommendation(incident_id)

        await pub.publish("sensors/ESC-2/alarm", alarm("esc-2", kind="fire", severity="Extreme"))
        await wait_for_value(conn, f"SELECT severity FROM incidents WHERE id = {int(incident_id)}", "Extreme")
        after = await recommendation(incident_id)

    # One incident throughout: the second alarm joined the first one's.
    incidents = await conn.fetch("SELECT id, alarm_count, sensor_count FROM incidents")
    assert [tuple(r) for r in incidents] == [(incident_id, 2, 2)]
    assert before["plan"]["name"] == "fire/Moderate" and after["plan"]["name"] == "fire/Extreme"
    assert after["plan"]["units"] == [
        {"capability": n.capability, "count": n.count} for n in PLANS.plan_for("fire", "Extreme").units
    ]

    def needed(body: dict[str, Any]) -> dict[str, int]:
        return {a["capability"]: a["needed"] for a in body["assignments"]}

    def chosen(body: dict[str, Any]) -> dict[str, int]:
        return {a["capability"]: len(a["chosen"]) for a in body["assignments"]}

    def supplies(body: dict[str, Any]) -> dict[str, int]:
        return {s["item"]: s["needed"] for s in body["supplies"]}

    # Everything the Moderate plan asked for is still asked for, at least as much, and more in total.
    for capability, count in needed(before).items():
        assert needed(after)[capability] >= count, capability
    assert sum(needed(after).values()) > sum(needed(before).values())
    for item, quantity in supplies(before).items():
        assert supplies(after)[item] >= quantity, item
    assert sum(supplies(after).values()) > sum(supplies(before).values())
    # The demo city has 14 fire engines: the Moderate plan gets its 3, the Extreme one more.
    assert chosen(before)["fire_suppression"] == needed(before)["fire_suppression"] == 3
    assert chosen(after)["fire_suppression"] > chosen(before)["fire_suppression"]
    assert sum(chosen(after).values()) > sum(chosen(before).values())
    assert after["plan"]["radius_m"] > before["plan"]["radius_m"]


# --- an incident with an area: what lies inside it, not within a radius ------------------


async def test_an_incident_with_an_area_lists_the_places_inside_it_not_within_its_radius(
    database_url: str, mqtt_url: str, conn: asyncpg.Connection
) -> None:
    """A Severe fire (plan radius 300 m) with a ~100 m square area. Its affected
    area is the square (README "Recommendations", dispatch/plans.toml `radius_m`:
    the radius is for an incident with no area of its own): a school inside it and
    a hazard inside it are listed at 0 m, and so is a site straddling its edge; a
    hospital 60 m east of it and a gas station 100 m north, both well within
    300 m of its centroid, are not. The same fire as a point at that centroid
    lists all of them by distance."""
    tokens = await seed_minimal(database_url)
    radius = PLANS.plan_for("fire", "Severe").radius_m
    assert radius == 300
    square = box(120.2000, 30.3000, 120.2010, 30.3009)
    centre = square.centroid
    await conn.executemany(
        "INSERT INTO sites (id, kind, name, geom) VALUES ($1, $2, $1, $3)",
        [
            ("SITE-IN", "school", Point(120.2003, 30.3003)),
            ("SITE-EDGE", "care_home", box(120.2008, 30.3004, 120.2014, 30.3006)),
            ("SITE-OUT", "hospital", Point(120.20162, 30.30045)),
        ],
    )
    await conn.executemany(
        "INSERT INTO hazards (id, kind, name, geom) VALUES ($1, 'gas_station', $1, $2)",
        [("HZ-IN", Point(120.2008, 30.3006)), ("HZ-OUT", Point(120.2005, 30.3018))],
    )
    outside = await conn.fetch(
        """
        SELECT id, ST_Distance(geom::geography, $1::geometry::geography, false) AS to_area,
               ST_Distance(geom::geography, $2::geometry::geography, false) AS to_centre
        FROM (SELECT id, geom FROM sites UNION ALL SELECT id, geom FROM hazards) AS p
        WHERE id LIKE '%-OUT' ORDER BY id
        """,
        square,
        centre,
    )
    # Outside the area by tens of metres, inside the plan's radius of its centre.
    assert [r["id"] for r in outside] == ["HZ-OUT", "SITE-OUT"]
    assert all(40 < r["to_area"] < 120 and r["to_centre"] < 200 for r in outside), outside
    with_area = await insert_incident(conn, "fire", "Severe", area=square)
    as_point = await insert_incident(conn, "fire", "Severe", location=centre)

    settings = settings_for(database_url, mqtt_url)
    async with running_server(settings), api_for(settings) as api:
        bodies = {}
        for incident_id in (with_area, as_point):
            for path in (f"/api/incidents/{incident_id}", f"/api/incidents/{incident_id}/recommendation"):
                status, body = await api.call("GET", path, tokens["commander"])
                assert status == 200, body
                bodies[path] = body

    def listed(body: dict[str, Any]) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
        return (
            [(h["id"], h["distance_m"]) for h in body["hazards"]],
            [(s["id"], s["distance_m"]) for s in body["sites"]],
        )

    for path in (f"/api/incidents/{with_area}", f"/api/incidents/{with_area}/recommendation"):
        hazards, sites = listed(bodies[path])
        assert hazards == [("HZ-IN", 0)], path
        assert sites == [("SITE-EDGE", 0), ("SITE-IN", 0)], path
    for path in (f"/api/incidents/{as_point}", f"/api/incidents/{as_point}/recommendation"):
        hazards, sites = listed(bodies[path])
        assert {h for h, _ in hazards} == {"HZ-IN", "HZ-OUT"}, path
        assert {s for s, _ in sites} == {"SITE-IN", "SITE-EDGE", "SITE-OUT"}, path
        assert all(0 < d <= radius for _, d in hazards + sites), path


# --- supplies: depots ranked by road travel time, expired stock left out ----------------


async def test_supplies_come_from_the_depot_nearest_by_road_first_and_never_from_expired_stock(
    conn: asyncpg.Connection,
) -> None:
    """A Moderate fire at v1 needs 50 blankets. On 36 km/h (10 m/s) roads:

    - ROAD-NEAR, 2 km north at v2, straight down one road: about 200 s;
    - LINE-NEAR, 1 km east at v3 (nearer as the crow flies), whose only road
      goes north to v4 and west to v2, then down: about 500 s;
    - EXPIRED, 50 m east at v5 on its own road: nearest both ways, but its
      blankets expired yesterday, so they do not count.

    Each holds 30 fresh blankets but EXPIRED: the need takes 30 from ROAD-NEAR,
    then 20 from LINE-NEAR, each with its road ETA.
    """
    v1, v2, v3 = Point(120.0, 30.0), Point(120.0, 30.018), Point(120.0104, 30.0)
    v4, v5 = Point(120.0104, 30.018), Point(120.0005, 30.0)
    await insert_road(conn, 1, 2, v1, v2, 36)
    await insert_road(conn, 3, 4, v3, v4, 36)
    await insert_road(conn, 4, 2, v4, v2, 36)
    await insert_road(conn, 5, 1, v5, v1, 36)
    length = {(r["source"], r["target"]): r["length_m"] for r in await conn.fetch("SELECT * FROM roads")}
    road_near_s = length[(1, 2)] / 10
    line_near_s = (length[(3, 4)] + length[(4, 2)] + length[(1, 2)]) / 10
    assert road_near_s == pytest.approx(200, abs=5) and line_near_s == pytest.approx(500, abs=10)

    now = datetime.now(UTC)
    await conn.executemany(
        "INSERT INTO depots (id, name, location) VALUES ($1, $1, $2)",
        [("ROAD-NEAR", v2), ("LINE-NEAR", v3), ("EXPIRED", v5)],
    )
    await conn.executemany(
        "INSERT INTO stock (depot_id, item, quantity, unit, expires_on)"
        " VALUES ($1, 'blankets', $2, 'pcs', $3)",
        [
            ("ROAD-NEAR", 30, None),
            ("LINE-NEAR", 30, None),
            ("EXPIRED", 500, (now - timedelta(days=1)).date()),
        ],
    )
    plan = PLANS.plan_for("fire", "Moderate")
    assert [(s.item, s.quantity, s.unit) for s in plan.supplies] == [("blankets", 50, "pcs")]
    fire = await insert_incident(conn, "fire", "Moderate", location=v1)
    body = await recommend_for(
        conn,
        IncidentPlace(fire, "fire", "Moderate", v1, None),
        PLANS,
        now=now,
        position_max_age=timedelta(minutes=15),
    )

    [blankets] = body["supplies"]
    assert (blankets["item"], blankets["needed"], blankets["filled"]) == ("blankets", 50, 50)
    sources = [(s["depot_id"], s["quantity"], s["in_stock"]) for s in blankets["sources"]]
    assert sources == [("ROAD-NEAR", 30, 30), ("LINE-NEAR", 20, 30)]
    road_near, line_near = blankets["sources"]
    assert road_near["eta_s"] == pytest.approx(road_near_s, abs=1)
    assert line_near["eta_s"] == pytest.approx(line_near_s, abs=1)
    # Farther as the crow flies, first by road.
    assert road_near["distance_m"] > line_near["distance_m"]
    assert not [f for f in body["shortfalls"] if f["what"] == "supplies"], body["shortfalls"]
