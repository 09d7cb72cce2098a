"""The commander's first question, answered: who and what should go, and how soon.

Gathers the facts in PostGIS and pgRouting (dispatch/postgis.py), lets the
pure planner (dispatch/planner.py) choose, and returns the JSON the API
serves. Takes plain values for the incident so ``dispatch`` never depends on
``command``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from shapely.geometry import Point
from shapely.geometry.base import BaseGeometry

from dispatch import postgis
from dispatch.planner import DepotStock, UnitCandidate, recommend, recommendation_to_wire
from dispatch.plans import Plans

# Candidates per required capability, before routing: enough for alternates
# and for units that turn out unreachable, few enough that one many-to-one
# route stays fast (50 candidates in total at most).
CANDIDATES_PER_CAPABILITY = 8
MAX_CANDIDATES = 50


@dataclass(frozen=True, slots=True)
class IncidentPlace:
    """What the recommendation needs to know about the incident."""

    id: int
    kind: str
    severity: str
    location: Point | None
    area: BaseGeometry | None


def destination(location: Point | None, area: BaseGeometry | None) -> Point | None:
    """Where units are sent: the incident's point, else a point inside its area
    (None when it has neither)."""
    if location is not None:
        return location
    return area.representative_point() if area is not None else None


def _places_to_wire(places: list[postgis.Place]) -> list[dict[str, Any]]:
    return [
        {"id": p.id, "kind": p.kind, "name": p.name, "distance_m": round(p.distance_m), **p.attrs}
        for p in places
    ]


async def surroundings(conn: asyncpg.Connection, incident: IncidentPlace, plans: Plans) -> dict[str, Any]:
    """The incident's district and the hazards and protection sites in its affected
    area (its area, or the plan's radius around its point), each with its distance."""
    where = incident.area if incident.area is not None else incident.location
    if where is None:
        return {"district": None, "hazards": [], "sites": []}
    radius = 0.0 if incident.area is not None else plans.plan_for(incident.kind, incident.severity).radius_m
    return {
        "district": await postgis.district_of(conn, where),
        "hazards": _places_to_wire(await postgis.places_near(conn, "hazards", where, radius)),
        "sites": _places_to_wire(await postgis.places_near(conn, "sites", where, radius)),
    }


async def recommend_for(
    conn: asyncpg.Connection,
    incident: IncidentPlace,
    plans: Plans,
    *,
    now: datetime,
    position_max_age: timedelta,
) -> dict[str, Any]:
    """The recommendation for one incident, as the API's JSON object.

    Args:
        conn: a connection with the geometry codec.
        incident: the incident's kind, severity and geometry.
        plans: the response plans.
        now: the edge's clock (position freshness and stock expiry).
        position_max_age: units whose last position is older are not considered.
    """
    plan = plans.plan_for(incident.kind, incident.severity)
    where = incident.area if incident.area is not None else incident.location
    if where is None:
        empty = recommend(plan, [], [])
        return recommendation_to_wire(empty) | {
            "incident": incident.id,
            "district": None,
            "hazards": [],
            "sites": [],
            "note": "the incident has no location: nothing can be routed to it",
        }
    target = destination(incident.location, incident.area)
    assert target is not None  # where is not None
    around = await surroundings(conn, incident, plans)

    near: dict[str, postgis.NearUnit] = {}
    for need in plan.units:
        for unit in await postgis.nearest_available_units(
            conn,
            target,
            need.capability,
            fresh_since=now - position_max_age,
            limit=max(CANDIDATES_PER_CAPABILITY, need.count + 2),
        ):
            near.setdefault(unit.id, unit)
    units = sorted(near.values(), key=lambda u: (u.distance_m, u.id))[:MAX_CANDIDATES]
    stock = await postgis.stock_near(conn, target, [s.item for s in plan.supplies], now)
    depot_points = {(s.depot_id): Point(s.lon, s.lat) for s in stock}
    origins = [Point(u.lon, u.lat) for u in units] + list(depot_points.values())
    times = await postgis.travel_times(
        conn, origins, target, closures=plans.road_closures(), exclude_incident=incident.id
    )
    unit_times, depot_times = times[: len(units)], dict(zip(depot_points, times[len(units) :], strict=True))

    candidates = [
        UnitCandidate(u.id, u.callsign, u.type, u.capabilities, u.distance_m, eta)
        for u, eta in zip(units, unit_times, strict=True)
    ]
    depots = [
        DepotStock(s.depot_id, s.name, s.item, s.quantity, s.unit, s.distance_m, depot_times[s.depot_id])
        for s in stock
    ]
    return recommendation_to_wire(recommend(plan, candidates, depots)) | {"incident": incident.id} | around
