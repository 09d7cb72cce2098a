"""Geolocation and routing in PostGIS and pgRouting.

Everything here is plain parameterised SQL over the connection it is given;
geometry crosses the boundary as shapely objects (command/db.py's codec).
Distances are spherical metres (``geography``), travel times seconds.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from shapely.geometry import Point
from shapely.geometry.base import BaseGeometry

from dispatch.plans import RoadClosure
from sensors.alarms import SEVERITIES

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
# docs/dispatch.md ("Road travel times") says how to change it.
ROUTING_MARGIN_DEG = 0.05


def _array(values: Sequence[str], sql_type: str) -> str:
    # Only called with values checked against strict patterns (no quote,
    # comma, brace, backslash or space), so the literal needs no escaping.
    return "'{" + ",".join(values) + "}'::" + sql_type + "[]"


def _edges_sql(
    closures: Iterable[RoadClosure],
    exclude_incident: int | None,
    envelope: tuple[float, float, float, float] | None = None,
    destination: tuple[float, float] | None = None,
) -> str:
    """The edge query pgRouting runs, without the roads that active incidents close.

    An incident closes roads when its own plan does: its (kind, severity) is
    one of ``closures`` (``Plans.road_closures()``). It closes the roads
    crossing its area, or, when it has no area, those within the closure's
    ``radius_m`` of its point. Ended incidents close nothing, and neither
    does ``exclude_incident`` nor an incident whose closed zone contains the
    ``destination`` (longitude, latitude): a trip into a zone has to use
    its roads, as responders to the incident itself do.

    pgRouting takes its edges as SQL text, which cannot carry parameters; the
    only values spliced in are kinds and severities checked against strict
    patterns, finite floats and integers, so nothing from outside reaches the
    text unchecked.

    Raises:
        ValueError: a closure's kind, severity or radius is malformed.
    """
    closing = sorted(set(closures), key=lambda c: (c.kind, c.severity, c.radius_m))
    for closure in closing:
        if not _KIND.match(closure.kind):
            raise ValueError(f"not a kind: {closure.kind!r}")
        if closure.severity not in SEVERITIES:
            raise ValueError(f"not a CAP severity: {closure.severity!r}")
        radius = closure.radius_m
        if isinstance(radius, bool) or not isinstance(radius, int | float) or not math.isfinite(radius):
            raise ValueError(f"{closure.kind}/{closure.severity}: radius_m must be a finite number")
        if radius < 0:
            raise ValueError(f"{closure.kind}/{closure.severity}: radius_m must not be negative")
    base = "SELECT r.id, r.source, r.target, r.cost_s AS cost, r.reverse_cost_s AS reverse_cost FROM roads r"
    box = None
    where = []
    if envelope is not None:
        xmin, ymin, xmax, ymax = (float(v) for v in envelope)
        box = f"ST_MakeEnvelope({xmin!r}, {ymin!r}, {xmax!r}, {ymax!r}, 4326)"
        where.append(f"r.geom && {box}")
    if not closing:
        return base + (" WHERE " + " AND ".join(where) if where else "")
    kinds = _array([c.kind for c in closing], "text")
    severities = _array([c.severity for c in closing], "text")
    radii = _array([repr(float(c.radius_m)) for c in closing], "float8")
    ended = _array(list(_ENDED), "text")
    # The incident being responded to is not a closure for its own
    # responders: they must reach it.
    own = f" AND i.id <> {int(exclude_incident)}" if exclude_incident is not None else ""
    if destination is not None:
        # Were such a zone closed, the trip could only end unreachable.
        x, y = (float(v) for v in destination)
        if not (math.isfinite(x) and math.isfinite(y)):
            raise ValueError("the destination must have finite coordinates")
        goal = f"ST_SetSRID(ST_MakePoint({x!r}, {y!r}), 4326)"
        own += (
            f" AND NOT COALESCE(ST_Intersects(i.area, {goal}),"
            f" ST_DWithin(i.location::geography, {goal}::geography, c.radius_m, false))"
        )
    in_box = f" AND x.geom && {box}" if box is not None else ""
    # Two branches rather than one CASE, so each can walk the roads' GiST
    # index from the incident's shape. Around a point the index is probed
    # with the geography buffer, 1% wider because a buffer's chords lie
    # inside the circle; ST_DWithin then decides exactly, in spherical metres
    # like every other distance here.
    closed = (
        "WITH closing AS ("
        " SELECT i.area, i.location, c.radius_m FROM incidents i"
        f" JOIN unnest({kinds}, {severities}, {radii}) AS c(kind, severity, radius_m)"
        " ON c.kind = i.kind AND c.severity = i.severity"
        f" WHERE i.status <> ALL({ended}){own}"
        "), closed AS ("
        " SELECT x.id FROM closing z JOIN roads x ON ST_Intersects(x.geom, z.area)"
        f" WHERE z.area IS NOT NULL{in_box}"
        " UNION"
        " SELECT x.id FROM closing z JOIN roads x"
        " ON x.geom && ST_Buffer(z.location::geography, z.radius_m * 1.01)::geometry"
        " AND ST_DWithin(x.geom::geography, z.location::geography, z.radius_m, false)"
        f" WHERE z.area IS NULL AND z.location IS NOT NULL{in_box}"
        ") "
    )
    where.append("r.id NOT IN (SELECT id FROM closed)")
    return f"{closed}{base} WHERE " + " AND ".join(where)


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
    closures: Iterable[RoadClosure] = (),
    exclude_incident: int | None = None,
) -> list[float | None]:
    """Road travel time in seconds from each origin to the destination, None when unreachable.

    One many-to-one ``pgr_dijkstraCost`` over the directed graph (one-way
    streets respected) of the roads within ``ROUTING_MARGIN_DEG`` of the
    trip, without the roads closed by active incidents (those whose closed
    zone holds the destination excepted: the trip must enter it). An origin
    inside a closed zone is cut off from the graph and comes back None.

    Args:
        conn: a connection with the geometry codec.
        origins: where the vehicles are.
        destination: where they go.
        closures: which (kind, severity) pairs close roads, with their radius
            for incidents without an area (``Plans.road_closures()``); empty:
            no road is closed.
        exclude_incident: an incident whose closures do not count (the one
            being driven to).
    Raises:
        ValueError: a closure is malformed.
    """
    if not origins:
        return []
    # Built first, so a malformed closure fails every call, not only those that route.
    goal = destination if isinstance(destination, Point) else destination.representative_point()
    edges = _edges_sql(closures, exclude_incident, _envelope([*origins, destination]), (goal.x, goal.y))
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
            edges,
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
