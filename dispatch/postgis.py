"""Geolocation and routing in PostGIS and pgRouting.

Everything here is plain parameterised SQL over the connection it is given;
geometry crosses the boundary as shapely objects (command/db.py's codec).
Distances are spherical metres (``geography``), travel times seconds.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from shapely.geometry.base import BaseGeometry

# Off the road graph (from a unit to the nearest road, from the road to the
# scene) a vehicle is assumed to crawl at this speed.
OFF_ROAD_SPEED_MPS = 20 / 3.6

_KIND = re.compile(r"^[a-z_]{1,40}$")
_ENDED = ("resolved", "closed", "false_alarm", "cancelled")


@dataclass(frozen=True, slots=True)
class Place:
    """A hazard or protection site near an incident."""

    id: str
    kind: str
    name: str
    distance_m: float
    attrs: dict[str, Any]


@dataclass(frozen=True, slots=True)
class NearUnit:
    id: str
    callsign: str
    type: str
    capabilities: frozenset[str]
    distance_m: float
    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class NearStock:
    depot_id: str
    name: str
    item: str
    quantity: int
    unit: str
    distance_m: float
    lat: float
    lon: float


async def district_of(conn: asyncpg.Connection, where: BaseGeometry) -> str | None:
    district: str | None = await conn.fetchval(
        """
        SELECT id FROM districts
        WHERE ST_Intersects(geom, ST_PointOnSurface($1::geometry))
        ORDER BY id LIMIT 1
        """,
        where,
    )
    return district


async def places_near(
    conn: asyncpg.Connection, table: str, where: BaseGeometry, radius_m: float, limit: int = 100
) -> list[Place]:
    """Hazards or sites within ``radius_m`` of ``where`` (0: inside it), nearest first.

    Args:
        table: ``hazards`` or ``sites`` (a fixed choice, never user input).
    """
    if table == "hazards":
        columns = "attrs"
    elif table == "sites":
        columns = "attrs || jsonb_strip_nulls(jsonb_build_object('capacity', capacity, 'beds', beds))"
    else:
        raise ValueError(f"not a place table: {table!r}")
    rows = await conn.fetch(
        f"""
        SELECT id, kind, name, {columns} AS attrs,
               ST_Distance(geom::geography, $1::geometry::geography, false) AS distance_m
        FROM {table}
        WHERE ST_DWithin(geom::geography, $1::geometry::geography, $2, false)
        ORDER BY distance_m, id
        LIMIT $3
        """,
        where,
        radius_m,
        limit,
    )
    return [Place(r["id"], r["kind"], r["name"], float(r["distance_m"]), dict(r["attrs"])) for r in rows]


async def nearest_available_units(
    conn: asyncpg.Connection,
    point: BaseGeometry,
    capability: str,
    *,
    fresh_since: datetime,
    limit: int,
) -> list[NearUnit]:
    """The ``limit`` nearest units that are available, have ``capability`` and
    reported their position at or after ``fresh_since``.

    KNN (``<->``) on the geography index: the index walks outwards from the
    point, so the cost does not grow with the fleet.
    """
    # The index can give the order of the distance alone, not of "distance,
    # id": ordered by both, PostgreSQL reads and sorts every matching unit.
    # So the inner query takes the nearest by distance (with every unit tied
    # with the last, so no tie is cut arbitrarily) and the outer one orders
    # those few by distance and id.
    rows = await conn.fetch(
        """
        SELECT id, callsign, type, capabilities, ST_Y(position) AS lat, ST_X(position) AS lon,
               ST_Distance(position::geography, $1::geometry::geography, false) AS distance_m
        FROM (
            SELECT id, callsign, type, capabilities, position,
                   position::geography <-> $1::geometry::geography AS knn
            FROM units
            WHERE status = 'available' AND position IS NOT NULL AND position_at >= $3
              AND $2 = ANY(capabilities)
            ORDER BY position::geography <-> $1::geometry::geography
            FETCH FIRST $4 ROWS WITH TIES
        ) AS near
        ORDER BY knn, id
        LIMIT $4
        """,
        point,
        capability,
        fresh_since,
        limit,
    )
    return [
        NearUnit(
            r["id"],
            r["callsign"],
            r["type"],
            frozenset(r["capabilities"]),
            float(r["distance_m"]),
            r["lat"],
            r["lon"],
        )
        for r in rows
    ]


async def stock_near(
    conn: asyncpg.Connection, point: BaseGeometry, items: Sequence[str], today: datetime, limit: int = 50
) -> list[NearStock]:
    """Unexpired stock of ``items``, nearest depot first."""
    rows = await conn.fetch(
        """
        SELECT d.id, d.name, s.item, s.quantity, s.unit, ST_Y(d.location) AS lat, ST_X(d.location) AS lon,
               ST_Distance(d.location::geography, $1::geometry::geography, false) AS distance_m
        FROM stock s JOIN depots d ON d.id = s.depot_id
        WHERE s.item = ANY($2::text[]) AND s.quantity > 0
          AND (s.expires_on IS NULL OR s.expires_on > $3::date)
        ORDER BY distance_m, d.id, s.item
        LIMIT $4
        """,
        point,
        list(items),
        today.date(),
        limit,
    )
    return [
        NearStock(
            r["id"],
            r["name"],
            r["item"],
            int(r["quantity"]),
            r["unit"],
            float(r["distance_m"]),
            r["lat"],
            r["lon"],
        )
        for r in rows
    ]


# Routing considers only roads within this margin (degrees, ~5 km) of the
# box around the origins and the destination: pgRouting reads the whole edge
# query on every call, so on a real city's network the box, not the number
# of candidates, decides the cost. A detour further out than this is not found.
ROUTING_MARGIN_DEG = 0.05


def _edges_sql(
    closing_kinds: Iterable[str],
    exclude_incident: int | None,
    envelope: tuple[float, float, float, float] | None = None,
) -> str:
    """The edge query pgRouting runs, without the roads inside closing incidents.

    pgRouting takes its edges as SQL text, which cannot carry parameters; the
    only values spliced in are alarm kinds checked against a strict pattern,
    an integer and floats we computed, so nothing from outside reaches the text.
    """
    kinds = sorted(set(closing_kinds))
    for kind in kinds:
        if not _KIND.match(kind):
            raise ValueError(f"not a kind: {kind!r}")
    base = "SELECT r.id, r.source, r.target, r.cost_s AS cost, r.reverse_cost_s AS reverse_cost FROM roads r"
    where = []
    if envelope is not None:
        xmin, ymin, xmax, ymax = (float(v) for v in envelope)
        where.append(f"r.geom && ST_MakeEnvelope({xmin!r}, {ymin!r}, {xmax!r}, {ymax!r}, 4326)")
    if not kinds:
        return base + (" WHERE " + " AND ".join(where) if where else "")
    kind_list = ", ".join(f"'{k}'" for k in kinds)
    ended = ", ".join(f"'{s}'" for s in _ENDED)
    # The incident being responded to is not a closure for its own
    # responders: they must reach it.
    own = f" AND i.id <> {int(exclude_incident)}" if exclude_incident is not None else ""
    where.append(
        "NOT EXISTS (SELECT 1 FROM incidents i WHERE i.area IS NOT NULL"
        f" AND i.kind IN ({kind_list}) AND i.status NOT IN ({ended}){own}"
        " AND ST_Intersects(r.geom, i.area))"
    )
    return f"{base} WHERE " + " AND ".join(where)


def _envelope(points: Sequence[BaseGeometry]) -> tuple[float, float, float, float]:
    xs = [b for p in points for b in (p.bounds[0], p.bounds[2])]
    ys = [b for p in points for b in (p.bounds[1], p.bounds[3])]
    m = ROUTING_MARGIN_DEG
    return (min(xs) - m, min(ys) - m, max(xs) + m, max(ys) + m)


@dataclass(frozen=True, slots=True)
class Snap:
    """Where a point joins the road graph: the vertex, and how far off the road it is."""

    vertex: int
    off_road_m: float


async def snap(conn: asyncpg.Connection, points: Sequence[BaseGeometry]) -> list[Snap | None]:
    """The nearest road vertex for each point (None when there are no roads)."""
    if not points:
        return []
    rows = await conn.fetch(
        """
        SELECT p.ord, nearest.vertex, nearest.off_road_m
        FROM unnest($1::geometry[]) WITH ORDINALITY AS p(geom, ord)
        LEFT JOIN LATERAL (
            SELECT CASE WHEN ST_Distance(ST_StartPoint(r.geom), p.geom)
                             <= ST_Distance(ST_EndPoint(r.geom), p.geom)
                        THEN r.source ELSE r.target END AS vertex,
                   ST_Distance(r.geom::geography, p.geom::geography, false) AS off_road_m
            FROM roads r ORDER BY r.geom <-> p.geom LIMIT 1
        ) AS nearest ON true
        ORDER BY p.ord
        """,
        list(points),
    )
    return [Snap(r["vertex"], float(r["off_road_m"])) if r["vertex"] is not None else None for r in rows]


async def travel_times(
    conn: asyncpg.Connection,
    origins: Sequence[BaseGeometry],
    destination: BaseGeometry,
    *,
    closing_kinds: Iterable[str] = (),
    exclude_incident: int | None = None,
) -> list[float | None]:
    """Road travel time in seconds from each origin to the destination, None when unreachable.

    One many-to-one ``pgr_dijkstraCost`` over the directed graph (one-way
    streets respected), without roads inside the areas of active incidents
    of the ``closing_kinds``.
    """
    if not origins:
        return []
    snaps = await snap(conn, [*origins, destination])
    target, starts = snaps[-1], snaps[:-1]
    if target is None:
        return [None] * len(origins)
    vertices = sorted({s.vertex for s in starts if s is not None and s.vertex != target.vertex})
    costs: dict[int, float] = {target.vertex: 0.0}
    if vertices:
        rows = await conn.fetch(
            """
            SELECT start_vid, agg_cost
            FROM pgr_dijkstraCost($1, $2::bigint[], $3::bigint, directed => true)
            """,
            _edges_sql(closing_kinds, exclude_incident, _envelope([*origins, destination])),
            vertices,
            target.vertex,
        )
        costs.update({r["start_vid"]: float(r["agg_cost"]) for r in rows})
    times: list[float | None] = []
    for start in starts:
        if start is None or start.vertex not in costs:
            times.append(None)
        else:
            off_road = (start.off_road_m + target.off_road_m) / OFF_ROAD_SPEED_MPS
            times.append(costs[start.vertex] + off_road)
    return times
