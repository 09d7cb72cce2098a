"""Geolocation and routing against real PostGIS and pgRouting."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

import asyncpg
import pytest
from shapely.geometry import LineString, MultiPolygon, Point, box

from dispatch import postgis

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


async def test_stale_or_busy_units_are_never_recommended(conn: asyncpg.Connection) -> None:
    here = Point(120.15, 30.27)
    await _units(
        conn,
        [
            ("FRESH-FAR", Point(120.20, 30.27), "available", NOW, ["rescue"]),
            ("STALE-NEAR", Point(120.1501, 30.27), "available", NOW - timedelta(hours=2), ["rescue"]),
            ("BUSY-NEAR", Point(120.1502, 30.27), "en_route", NOW, ["rescue"]),
            ("OUT-NEAR", Point(120.1503, 30.27), "out_of_service", NOW, ["rescue"]),
            ("WRONG-CAP", Point(120.1504, 30.27), "available", NOW, ["medical"]),
        ],
    )
    got = await postgis.nearest_available_units(
        conn, here, "rescue", fresh_since=NOW - timedelta(minutes=15), limit=10
    )
    assert [u.id for u in got] == ["FRESH-FAR"]


async def _line(
    conn: asyncpg.Connection, source: int, target: int, a: Point, b: Point, kmh: float, oneway: bool = False
) -> None:
    line = LineString([a, b])
    length = await conn.fetchval("SELECT ST_Length($1::geometry::geography)", line)
    await conn.execute(
        """
        INSERT INTO roads (source, target, length_m, speed_kmh, oneway, geom)
        VALUES ($1, $2, $3, $4, $5, $6)
        """,
        source,
        target,
        length,
        kmh,
        oneway,
        line,
    )


async def test_route_around_a_closure_takes_longer_as_computed_by_hand(conn: asyncpg.Connection) -> None:
    """A square: 1 -(A: 1 km, 36 km/h)- 2 directly, or 1 - 3 - 2 around (two 1 km edges at 36 km/h).

    Straight: 100 s. With a flood over edge A the route goes around: 200 s.
    With floods over both ways: unreachable.
    """
    v1, v2, v3 = Point(120.0, 30.0), Point(120.0, 30.009), Point(120.0104, 30.0045)
    await _line(conn, 1, 2, v1, v2, 36)
    await _line(conn, 1, 3, v1, v3, 36)
    await _line(conn, 3, 2, v3, v2, 36)
    lengths = {(r["source"], r["target"]): r["length_m"] for r in await conn.fetch("SELECT * FROM roads")}
    direct_s = lengths[(1, 2)] / 10.0  # 36 km/h is 10 m/s

    times = await postgis.travel_times(conn, [v1], v2, closing_kinds=("flood",))
    assert times[0] == pytest.approx(direct_s, abs=0.01)

    async def flood(area: MultiPolygon | object) -> int:
        incident: int = await conn.fetchval(
            """
            INSERT INTO incidents (kind, category, severity, location, area, title,
                                   opened_at, updated_at)
            VALUES ('flood', 'natural_disaster', 'Severe', ST_Centroid($1::geometry), $1, 'flood',
                    now(), now())
            RETURNING id
            """,
            area,
        )
        return incident

    await flood(box(119.999, 30.004, 120.001, 30.005))  # across edge A only
    around = (lengths[(1, 3)] + lengths[(3, 2)]) / 10.0
    times = await postgis.travel_times(conn, [v1], v2, closing_kinds=("flood",))
    assert times[0] == pytest.approx(around, abs=0.01)
    assert times[0] > direct_s * 1.5
    # The same flood does not close roads for kinds whose plan keeps them open.
    assert (await postgis.travel_times(conn, [v1], v2, closing_kinds=("fire",)))[0] == pytest.approx(
        direct_s, abs=0.01
    )

    other = await flood(box(120.004, 30.0, 120.007, 30.01))  # across the way around too
    assert await postgis.travel_times(conn, [v1], v2, closing_kinds=("flood",)) == [None]
    # Responders to that flood itself are not shut out by it.
    times = await postgis.travel_times(conn, [v1], v2, closing_kinds=("flood",), exclude_incident=other)
    assert times[0] == pytest.approx(around, abs=0.01)


async def test_one_way_streets_are_respected(conn: asyncpg.Connection) -> None:
    a, b = Point(120.0, 30.0), Point(120.0, 30.009)
    await _line(conn, 1, 2, a, b, 36, oneway=True)
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
