"""Geolocation and routing against real PostGIS and pgRouting."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

import asyncpg
import pytest
from shapely.geometry import Point, box

from dispatch import postgis
from dispatch.plans import RoadClosure
from dispatch.units import UNIT_STATUSES
from tests.integration.helpers import insert_incident, insert_road

NOW = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)


async def _units(conn: asyncpg.Connection, rows: list[tuple[str, Point, str, datetime, list[str]]]) -> None:
    await conn.executemany(
        """
        INSERT INTO units (id, callsign, type, capabilities, status, position, position_at)
        VALUES ($1, $1, 'fire_engine', $5, $3, $2, $4)
        """,
        rows,
    )


async def test_knn_matches_brute_force_sort(conn: asyncpg.Connection) -> None:
    rng = random.Random(11)
    rows = [
        (
            f"U-{n:04d}",
            Point(120.0 + rng.uniform(0, 0.4), 30.1 + rng.uniform(0, 0.3)),
            "available",
            NOW,
            ["fire_suppression"] if n % 3 else ["medical"],
        )
        for n in range(3000)
    ]
    await _units(conn, rows)
    for _ in range(20):
        here = Point(120.0 + rng.uniform(0, 0.4), 30.1 + rng.uniform(0, 0.3))
        got = await postgis.nearest_available_units(
            conn, here, "fire_suppression", fresh_since=NOW - timedelta(minutes=10), limit=25
        )
        brute = await conn.fetch(
            """
            SELECT id FROM units WHERE 'fire_suppression' = ANY(capabilities)
            ORDER BY ST_Distance(position::geography, $1::geometry::geography, false), id LIMIT 25
            """,
            here,
        )
        assert [u.id for u in got] == [r["id"] for r in brute]
        assert [u.distance_m for u in got] == sorted(u.distance_m for u in got)


# Every status but available: a unit in any of them is busy or cannot go.
NOT_AVAILABLE = [s for s in UNIT_STATUSES if s != "available"]


def test_every_unit_status_but_available_is_covered_below() -> None:
    assert sorted(NOT_AVAILABLE) == sorted(
        ["dispatched", "en_route", "on_scene", "returning", "out_of_service"]
    )


@pytest.mark.parametrize("busy", NOT_AVAILABLE)
async def test_stale_or_busy_units_are_never_recommended(conn: asyncpg.Connection, busy: str) -> None:
    here = Point(120.15, 30.27)
    await _units(
        conn,
        [
            ("FRESH-FAR", Point(120.20, 30.27), "available", NOW, ["rescue"]),
            ("STALE-NEAR", Point(120.1501, 30.27), "available", NOW - timedelta(hours=2), ["rescue"]),
            ("BUSY-NEAR", Point(120.1502, 30.27), busy, NOW, ["rescue"]),
            ("WRONG-CAP", Point(120.1504, 30.27), "available", NOW, ["medical"]),
        ],
    )
    got = await postgis.nearest_available_units(
        conn, here, "rescue", fresh_since=NOW - timedelta(minutes=15), limit=10
    )
    assert [u.id for u in got] == ["FRESH-FAR"]
    # The same unit, available again, is the nearest.
    await conn.execute("UPDATE units SET status = 'available' WHERE id = 'BUSY-NEAR'")
    got = await postgis.nearest_available_units(
        conn, here, "rescue", fresh_since=NOW - timedelta(minutes=15), limit=10
    )
    assert [u.id for u in got] == ["BUSY-NEAR", "FRESH-FAR"]


# Closures as a plans file would give them (hand-picked here, so these
# examples do not move when the shipped plans are tuned): floods close roads
# at Severe, fires only from Severe up, collapses at three radii.
FLOOD_SEVERE = RoadClosure("flood", "Severe", 2000.0)
FIRE_SEVERE = RoadClosure("fire", "Severe", 300.0)
COLLAPSE = (
    RoadClosure("structure_collapse", "Moderate", 150.0),
    RoadClosure("structure_collapse", "Severe", 250.0),
    RoadClosure("structure_collapse", "Extreme", 400.0),
)


async def _square(conn: asyncpg.Connection) -> tuple[Point, Point, float, float]:
    """A triangle: 1 -(A: 1 km, 36 km/h)- 2 directly, or 1 - 3 - 2 around (two ~1.1 km edges).

    Returns v1, v2, the direct time (about 100 s) and the time around (about 224 s).
    """
    v1, v2, v3 = Point(120.0, 30.0), Point(120.0, 30.009), Point(120.0104, 30.0045)
    await insert_road(conn, 1, 2, v1, v2, 36)
    await insert_road(conn, 1, 3, v1, v3, 36)
    await insert_road(conn, 3, 2, v3, v2, 36)
    lengths = {(r["source"], r["target"]): r["length_m"] for r in await conn.fetch("SELECT * FROM roads")}
    # 36 km/h is 10 m/s
    return v1, v2, lengths[(1, 2)] / 10.0, (lengths[(1, 3)] + lengths[(3, 2)]) / 10.0


async def test_route_around_a_closure_takes_longer_as_computed_by_hand(conn: asyncpg.Connection) -> None:
    """Straight: 100 s. With a flood over edge A the route goes around: 224 s.
    With floods over both ways: unreachable.
    """
    v1, v2, direct_s, around = await _square(conn)
    assert direct_s == pytest.approx(99.8, abs=0.1) and around == pytest.approx(224.1, abs=0.1)

    times = await postgis.travel_times(conn, [v1], v2, closures=[FLOOD_SEVERE])
    assert times[0] == pytest.approx(direct_s, abs=0.01)

    across_a_only = box(119.999, 30.004, 120.001, 30.005)
    await insert_incident(conn, "flood", "Severe", area=across_a_only)
    times = await postgis.travel_times(conn, [v1], v2, closures=[FLOOD_SEVERE])
    assert times[0] == pytest.approx(around, abs=0.01)
    assert times[0] is not None and times[0] > direct_s * 1.5
    # The same flood does not close roads when no plan of its kind closes them.
    assert (await postgis.travel_times(conn, [v1], v2, closures=[FIRE_SEVERE]))[0] == pytest.approx(
        direct_s, abs=0.01
    )

    around_too = box(120.004, 30.0, 120.007, 30.01)
    other = await insert_incident(conn, "flood", "Severe", area=around_too)
    assert await postgis.travel_times(conn, [v1], v2, closures=[FLOOD_SEVERE]) == [None]
    # Responders to that flood itself are not shut out by it.
    times = await postgis.travel_times(conn, [v1], v2, closures=[FLOOD_SEVERE], exclude_incident=other)
    assert times[0] == pytest.approx(around, abs=0.01)


async def test_an_incident_closes_roads_only_at_a_severity_whose_plan_closes_them(
    conn: asyncpg.Connection,
) -> None:
    """A fire's area across edge A: a Moderate fire (its plan keeps roads open)
    changes nothing; the same fire at Severe closes A; once resolved, nothing."""
    v1, v2, direct_s, around = await _square(conn)
    fire = await insert_incident(conn, "fire", "Moderate", area=box(119.999, 30.004, 120.001, 30.005))

    async def eta() -> float | None:
        return (await postgis.travel_times(conn, [v1], v2, closures=[FIRE_SEVERE]))[0]

    assert await eta() == pytest.approx(direct_s, abs=0.01)
    await conn.execute("UPDATE incidents SET severity = 'Severe' WHERE id = $1", fire)
    assert await eta() == pytest.approx(around, abs=0.01)
    for ended in ("resolved", "closed", "false_alarm", "cancelled"):
        await conn.execute("UPDATE incidents SET status = $2 WHERE id = $1", fire, ended)
        assert await eta() == pytest.approx(direct_s, abs=0.01), ended
    await conn.execute("UPDATE incidents SET status = 'contained' WHERE id = $1", fire)
    assert await eta() == pytest.approx(around, abs=0.01)  # contained is still active


async def test_an_incident_without_an_area_closes_roads_within_its_radius(conn: asyncpg.Connection) -> None:
    """A collapse reported as a point 200 m east of edge A's middle, with no area.

    By hand: 200 m from A and about 358 m from each edge of the way around
    (in metres from v1 on the sphere, A runs north, the way around leaves
    towards (1001.5, 500.4), direction (0.8945, 0.4469), and the point is at
    (200, 500.4): |200 * 0.4469 - 500.4 * 0.8945| = 358.2). So the
    Moderate radius (150 m) closes nothing: 100 s; the Severe one (250 m)
    closes A: 224 s; the Extreme one (400 m) closes all three: unreachable.
    """
    v1, v2, direct_s, around = await _square(conn)
    point = await conn.fetchval(
        "SELECT ST_Project($1::geometry::geography, 200, pi() / 2)::geometry", Point(120.0, 30.0045)
    )
    distances = await conn.fetch(
        """
        SELECT source, target, ST_Distance(geom::geography, $1::geometry::geography, false) AS m
        FROM roads ORDER BY source, target
        """,
        point,
    )
    assert [(r["source"], r["target"]) for r in distances] == [(1, 2), (1, 3), (3, 2)]
    assert [r["m"] for r in distances] == pytest.approx([200.0, 358.2, 358.2], abs=0.5)
    collapse = await insert_incident(conn, "structure_collapse", "Minor", location=point)

    async def eta() -> float | None:
        return (await postgis.travel_times(conn, [v1], v2, closures=COLLAPSE))[0]

    assert await eta() == pytest.approx(direct_s, abs=0.01)  # no closure for Minor at all
    expected = {"Moderate": direct_s, "Severe": around, "Extreme": None}
    for severity, want in expected.items():
        await conn.execute("UPDATE incidents SET severity = $2 WHERE id = $1", collapse, severity)
        got = await eta()
        assert got == (None if want is None else pytest.approx(want, abs=0.01)), severity
    # Its own responders drive through; an ended collapse closes nothing.
    times = await postgis.travel_times(conn, [v1], v2, closures=COLLAPSE, exclude_incident=collapse)
    assert times[0] == pytest.approx(direct_s, abs=0.01)
    await conn.execute("UPDATE incidents SET status = 'resolved' WHERE id = $1", collapse)
    assert await eta() == pytest.approx(direct_s, abs=0.01)


async def test_malformed_closures_are_refused(conn: asyncpg.Connection) -> None:
    v1, v2, _, _ = await _square(conn)
    for bad in (
        RoadClosure("flood'; DROP TABLE roads; --", "Severe", 100.0),
        RoadClosure("flood", "Bad", 100.0),
        RoadClosure("flood", "Severe", float("nan")),
        RoadClosure("flood", "Severe", -1.0),
    ):
        with pytest.raises(ValueError):
            await postgis.travel_times(conn, [v1], v2, closures=[bad])
    assert await conn.fetchval("SELECT count(*) FROM roads") == 3


async def test_one_way_streets_are_respected(conn: asyncpg.Connection) -> None:
    a, b = Point(120.0, 30.0), Point(120.0, 30.009)
    await insert_road(conn, 1, 2, a, b, 36, oneway=True)
    assert (await postgis.travel_times(conn, [a], b))[0] is not None
    assert await postgis.travel_times(conn, [b], a) == [None]


async def test_places_and_stock_near(conn: asyncpg.Connection) -> None:
    here = Point(120.15, 30.27)
    await conn.execute(
        """
        INSERT INTO hazards (id, kind, name, geom)
        VALUES ('H-1', 'gas_station', 'near', $1), ('H-2', 'gas_station', 'far', $2)
        """,
        Point(120.151, 30.27),
        Point(120.20, 30.27),
    )
    await conn.execute(
        "INSERT INTO sites (id, kind, name, geom, beds) VALUES ('S-1', 'hospital', 'General', $1, 300)",
        box(120.1495, 30.2695, 120.1505, 30.2705),
    )
    hazards = await postgis.places_near(conn, "hazards", here, 500)
    assert [(h.id, round(h.distance_m)) for h in hazards] == [("H-1", 96)]
    sites = await postgis.places_near(conn, "sites", here, 500)
    assert sites[0].id == "S-1" and sites[0].distance_m == 0 and sites[0].attrs == {"beds": 300}

    await conn.execute(
        "INSERT INTO depots (id, name, location) VALUES ('D-1', 'Depot', $1)", Point(120.16, 30.27)
    )
    await conn.executemany(
        "INSERT INTO stock (depot_id, item, quantity, unit, expires_on) VALUES ('D-1', $1, $2, 'pcs', $3)",
        [("sandbags", 100, None), ("medical_kits", 40, date(2026, 1, 1)), ("tents", 0, None)],
    )
    stock = await postgis.stock_near(conn, here, ["sandbags", "medical_kits", "tents"], NOW)
    # Expired kits and an empty shelf do not count.
    assert [(s.item, s.quantity) for s in stock] == [("sandbags", 100)]
