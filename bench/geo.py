"""The geolocation benchmark: nearest units, road ETAs and whole recommendations, beside raw baselines.

``python -m bench.geo`` (``python -m bench`` runs it after the ingest
benchmark). One private, durable PostgreSQL with PostGIS and pgRouting
(bench/rig.py), migrated; every figure is a latency in milliseconds seen by
an asyncpg client on this machine (one connection, one query at a time),
printed beside a raw baseline measured in the same run over the same draws,
our call and the baseline's taking turns to go first:

1. nearest available unit by capability: ``postgis.nearest_available_units``
   (limit 10) at random points of the demo city's box, over 1,000, 10,000
   and 100,000 units with a realistic mix (most units available, some
   positions older than the maximum age, some never reported, capabilities by
   type); raw: the plain PostGIS KNN ``ORDER BY position <-> point LIMIT 10``
   on the geometry index, without any filter. The slowest draw of each size
   is run again under EXPLAIN ANALYZE, to say what the query visited.
2. road ETA for 50 candidates on the demo city's road graph (with a few
   active road-closing incidents): ``postgis.travel_times`` (snapping,
   closures, one many-to-one ``pgr_dijkstraCost``); raw: one
   ``pgr_dijkstraCost`` over the unfiltered road table from the same
   vertices, snapped beforehand.
3. the whole recommendation, ``dispatch.recommendation.recommend_for``, for
   random incidents on the demo city with its 63 units, then with 10,000 more;
   raw: the two operations at its core without anything around them, the
   plain KNN for 50 units and one unfiltered ``pgr_dijkstraCost`` from their
   vertices (snapped beforehand).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import random
import struct
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast

import asyncpg
from shapely.geometry import Point
from shapely.geometry.base import BaseGeometry

from bench.ingest import _stoppable, attempt, progress, save_results
from bench.machine import load_average, machine_info
from bench.procs import BenchError
from bench.rig import Rig, rig
from bench.stats import fmt_ms_fine, fmt_ratio, ratio, summary
from command import db
from command.demo_city import BBOX, build_city
from command.seed import seed_demo
from command.services import ServiceError
from command.settings import Settings
from dispatch import postgis
from dispatch.plans import DEFAULT_PLANS_PATH, Plans, parse_plans
from dispatch.recommendation import MAX_CANDIDATES, IncidentPlace, recommend_for
from dispatch.units import CAPABILITIES, CAPABILITIES_OF_TYPE, UNIT_STATUSES, UNIT_TYPES
from sensors.alarms import SEVERITIES

T = TypeVar("T")

#: The server's default: units whose position is older are not recommended.
POSITION_MAX_AGE = timedelta(
    seconds=cast(int, {f.name: f for f in dataclasses.fields(Settings)}["position_max_age_s"].default)
)
NEAREST_LIMIT = 10
ETA_CANDIDATES = 50
EXTRA_UNITS = 10_000
WARMUP = 10  # draws run before each measurement, not recorded

# The fleet mix: a city has many more ambulances and patrol cars than hazmat
# teams, so a query for a rare capability must walk further out.
TYPE_WEIGHTS: dict[str, float] = {
    "fire_engine": 20,
    "ambulance": 25,
    "police": 25,
    "rescue_squad": 8,
    "hazmat_team": 3,
    "public_health_team": 5,
    "utility_crew": 6,
    "volunteer_team": 8,
}
AVAILABLE_SHARE = 0.70
STALE_SHARE = 0.15  # last position 1 to 24 hours old: older than the maximum age
UNPOSITIONED_SHARE = 0.01  # never reported a position
FRESH_AGE_S = 600.0  # fresh positions are up to this old when the fleet is loaded
CLOSURES = 3  # active road-closing incidents on the demo city
CLOSURE_RADIUS_M = 400.0

RAW_KNN = "SELECT id FROM units ORDER BY position <-> $1 LIMIT $2"
RAW_DIJKSTRA = """
    SELECT start_vid, agg_cost
    FROM pgr_dijkstraCost(
        'SELECT id, source, target, cost_s AS cost, reverse_cost_s AS reverse_cost FROM roads',
        $1::bigint[], $2::bigint, directed => true)
"""


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    sizes: tuple[int, ...]  # fleet sizes for the nearest-unit scenario
    queries: int  # query points per size
    eta_draws: int  # (50 origins, destination) draws
    recommendations: int  # incidents per fleet


PROFILES: dict[str, Profile] = {
    "quick": Profile("quick", sizes=(1_000, 10_000, 100_000), queries=300, eta_draws=50, recommendations=50),
    "default": Profile(
        "default", sizes=(1_000, 10_000, 100_000), queries=1_000, eta_draws=200, recommendations=200
    ),
}

GOALS = {"nearest_p99_ms_at_100000": 5.0, "eta_p99_ms_for_50": 200.0}


# -- helpers ---------------------------------------------------------------------


def _random_point(rng: random.Random) -> Point:
    west, south, east, north = BBOX
    return Point(rng.uniform(west, east), rng.uniform(south, north))


def _ewkb(lon: float, lat: float) -> bytes:
    """A little-endian EWKB point with SRID 4326."""
    return struct.pack("<BIIdd", 1, 0x20000001, 4326, lon, lat)


async def _timed(call: Awaitable[T]) -> tuple[float, T]:
    started = time.perf_counter()
    result = await call
    return (time.perf_counter() - started) * 1000, result


async def _paired(
    count: int,
    ours: Callable[[int], Awaitable[T]],
    raw: Callable[[int], Awaitable[Any]],
) -> tuple[list[float], list[float], list[T]]:
    """Milliseconds of ``ours(i)`` and ``raw(i)`` for each draw ``i``, taking turns to go
    first, after ``WARMUP`` untimed draws (``count`` to ``count + WARMUP - 1``).

    Returns:
        ours' milliseconds, raw's milliseconds, and what ours returned, by draw.
    """
    for i in range(count, count + WARMUP):
        await ours(i)
        await raw(i)
    ours_ms: list[float] = []
    raw_ms: list[float] = []
    results: list[T] = []
    for i in range(count):
        if i % 2:
            raw_ms.append((await _timed(raw(i)))[0])
            took, result = await _timed(ours(i))
        else:
            took, result = await _timed(ours(i))
            raw_ms.append((await _timed(raw(i)))[0])
        ours_ms.append(took)
        results.append(result)
    return ours_ms, raw_ms, results


def _compare(ours_ms: list[float], raw_ms: list[float]) -> dict[str, Any]:
    ours, raw = summary(ours_ms), summary(raw_ms)
    return {
        "ours_ms": ours,
        "raw_ms": raw,
        "ratio": {k: ratio(ours[k], raw[k]) for k in ("p50", "p90", "p99", "max")},
    }


class _Recorder:
    """Stands in for a connection: runs what a function sends, and keeps each statement."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    async def fetch(self, query: str, *args: Any) -> list[Any]:
        self.calls.append((query, args))
        rows: list[Any] = await self._conn.fetch(query, *args)
        return rows

    async def fetchrow(self, query: str, *args: Any) -> Any:
        self.calls.append((query, args))
        return await self._conn.fetchrow(query, *args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        self.calls.append((query, args))
        return await self._conn.fetchval(query, *args)

    async def execute(self, query: str, *args: Any) -> str:
        self.calls.append((query, args))
        status: str = await self._conn.execute(query, *args)
        return status


async def _connect(url: str) -> asyncpg.Connection:
    """A connection as the server has them: shapely geometry and JSON codecs."""
    conn = await asyncpg.connect(url)
    await db.register_codecs(conn)
    return conn


# -- the fleet -------------------------------------------------------------------


def fleet_records(count: int, prefix: str, now: datetime, seed: int) -> list[tuple[Any, ...]]:
    """``count`` unit rows for COPY, at random positions in the demo city's box."""
    rng = random.Random(seed)
    weights = [TYPE_WEIGHTS.get(t, 5.0) for t in UNIT_TYPES]
    others = [s for s in UNIT_STATUSES if s != "available"]
    west, south, east, north = BBOX
    records: list[tuple[Any, ...]] = []
    for n in range(count):
        unit_type = rng.choices(UNIT_TYPES, weights)[0]
        status = "available" if rng.random() < AVAILABLE_SHARE else rng.choice(others)
        roll = rng.random()
        if roll < UNPOSITIONED_SHARE:
            position, position_at = None, None
        else:
            stale = roll < UNPOSITIONED_SHARE + STALE_SHARE
            age = rng.uniform(3600, 86_400) if stale else rng.uniform(0, FRESH_AGE_S)
            position = _ewkb(rng.uniform(west, east), rng.uniform(south, north))
            position_at = now - timedelta(seconds=age)
        records.append(
            (
                f"{prefix}{n:06d}",
                f"{prefix}-{n}",
                unit_type,
                list(CAPABILITIES_OF_TYPE[unit_type]),
                rng.randint(2, 6),
                status,
                position,
                position_at,
            )
        )
    return records


async def load_fleet(url: str, count: int, prefix: str, now: datetime, seed: int) -> float:
    """COPY ``count`` units into ``units`` and ANALYZE it. Returns the seconds it took."""
    records = fleet_records(count, prefix, now, seed)
    conn = await asyncpg.connect(url)
    try:
        # The positions are EWKB already: pass them through as PostGIS's binary format.
        await conn.set_type_codec("geometry", encoder=bytes, decoder=bytes, format="binary")
        started = time.perf_counter()
        await conn.copy_records_to_table(
            "units",
            records=records,
            columns=["id", "callsign", "type", "capabilities", "crew", "status", "position", "position_at"],
        )
        await conn.execute("ANALYZE units")
        return time.perf_counter() - started
    finally:
        await conn.close()


async def _eligible(conn: asyncpg.Connection, fresh_since: datetime) -> dict[str, int]:
    """Units each capability query may return: available, positioned, fresh."""
    rows = await conn.fetch(
        """
        SELECT c AS capability, count(*) AS n
        FROM units, unnest(capabilities) AS c
        WHERE status = 'available' AND position IS NOT NULL AND position_at >= $1
        GROUP BY c
        """,
        fresh_since,
    )
    found = {r["capability"]: int(r["n"]) for r in rows}
    return {c: found.get(c, 0) for c in CAPABILITIES}


# -- EXPLAIN -----------------------------------------------------------------------


def _plan_nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    found = [node]
    for child in node.get("Plans", []):
        found += _plan_nodes(child)
    return found


def rows_visited(plan: dict[str, Any], table: str) -> int:
    """Rows of ``table`` the plan's scans produced or threw away (both are per loop in EXPLAIN)."""
    total = 0.0
    for node in _plan_nodes(plan["Plan"]):
        if node.get("Relation Name") != table:
            continue
        per_loop = (
            node.get("Actual Rows", 0)
            + node.get("Rows Removed by Filter", 0)
            + node.get("Rows Removed by Index Recheck", 0)
        )
        total += per_loop * node.get("Actual Loops", 1)
    return round(total)


async def explain(
    conn: asyncpg.Connection, query: str, args: Sequence[Any], table: str, *, generic: bool = False
) -> dict[str, Any]:
    """EXPLAIN ANALYZE of one statement: its top line, its scans, the rows of ``table`` visited.

    ``generic``: the plan PostgreSQL caches for the statement without looking
    at the values (the one a prepared statement runs after five executions,
    when it is not costlier than the custom ones), rather than the plan made
    for these values. EXPLAIN of a statement with parameters always plans
    for the values, so the generic plan is shown through PREPARE/EXECUTE.
    """
    if not generic:
        text = [r[0] for r in await conn.fetch("EXPLAIN (ANALYZE, BUFFERS) " + query, *args)]
        doc = await conn.fetchval("EXPLAIN (ANALYZE, FORMAT JSON) " + query, *args)
    else:
        types = [f"{t.schema}.{t.name}" for t in (await conn.prepare(query)).get_parameters()]
        # EXECUTE takes values, not parameters: spell each one as a literal of its type.
        values = [
            f"{await conn.fetchval(f'SELECT quote_literal($1::{t}::text)', arg)}::{t}"
            for t, arg in zip(types, args, strict=True)
        ]
        await conn.execute(f"PREPARE bench_generic ({', '.join(types)}) AS {query}")
        try:
            await conn.execute("SET plan_cache_mode = force_generic_plan")
            execute = f"EXECUTE bench_generic ({', '.join(values)})"
            text = [r[0] for r in await conn.fetch("EXPLAIN (ANALYZE, BUFFERS) " + execute)]
            doc = await conn.fetchval("EXPLAIN (ANALYZE, FORMAT JSON) " + execute)
        finally:
            await conn.execute("RESET plan_cache_mode; DEALLOCATE bench_generic")
    plan = (json.loads(doc) if isinstance(doc, str) else doc)[0]
    scans = [
        line.strip().removeprefix("->").strip().split("  (")[0]
        for line in text
        if " on " + table in line and "Scan" in line
    ]
    return {
        "generic": generic,
        "top": text[0].strip(),
        "scans": scans,
        "rows_visited": rows_visited(plan, table),
        "execution_ms": plan.get("Execution Time"),
        "plan": text,
    }


async def _plan_cache(conn: asyncpg.Connection, query: str) -> dict[str, int] | None:
    """How often PostgreSQL planned this connection's prepared ``query`` custom and generic."""
    row = await conn.fetchrow(
        "SELECT custom_plans, generic_plans FROM pg_prepared_statements WHERE statement = $1 LIMIT 1", query
    )
    return None if row is None else {"custom": int(row["custom_plans"]), "generic": int(row["generic_plans"])}


# -- 1. nearest available unit --------------------------------------------------------


async def nearest(r: Rig, size: int, queries: int, seed: int) -> dict[str, Any]:
    url = await r.fresh_database(f"nearest_{size}")
    now = datetime.now(UTC)
    fresh_since = now - POSITION_MAX_AGE
    load_s = await load_fleet(url, size, "G", now, seed)
    rng = random.Random(seed + 1)
    draws = [(_random_point(rng), rng.choice(CAPABILITIES)) for _ in range(queries + WARMUP)]
    conn = await _connect(url)
    try:
        eligible = await _eligible(conn, fresh_since)

        def ours(i: int) -> Awaitable[list[postgis.NearUnit]]:
            point, capability = draws[i]
            return postgis.nearest_available_units(
                conn, point, capability, fresh_since=fresh_since, limit=NEAREST_LIMIT
            )

        async def raw(i: int) -> None:
            await conn.fetch(RAW_KNN, draws[i][0], NEAREST_LIMIT)

        ours_ms, raw_ms, found = await _paired(queries, ours, raw)
        short = sum(len(units) < NEAREST_LIMIT for units in found)

        # The slowest draw again, under EXPLAIN ANALYZE, with the very statement the function sends.
        slowest = max(range(queries), key=ours_ms.__getitem__)
        recorder = _Recorder(conn)
        point, capability = draws[slowest]
        await postgis.nearest_available_units(
            cast(asyncpg.Connection, recorder),
            point,
            capability,
            fresh_since=fresh_since,
            limit=NEAREST_LIMIT,
        )
        ((query, args),) = recorder.calls
        cache = await _plan_cache(conn, query)
        # Show the plan the run used most: the generic one once the cache settled on it.
        generic = cache is not None and cache["generic"] > cache["custom"]
        plans = {
            "ours": await explain(conn, query, args, "units", generic=generic),
            "raw": await explain(conn, RAW_KNN, (point, NEAREST_LIMIT), "units"),
        }
    finally:
        await conn.close()
    return {
        "units": size,
        "queries": queries,
        "load_s": load_s,
        "eligible_by_capability": eligible,
        "short_results": short,
        "slowest": {"capability": capability, "ms": ours_ms[slowest], "explain": plans},
        "plan_cache": cache,
        **_compare(ours_ms, raw_ms),
    }


# -- 2. road ETA ------------------------------------------------------------------------


async def demo_city(r: Rig, seed: int) -> tuple[str, dict[str, int]]:
    """A database with the demo city and ``CLOSURES`` active road-closing incidents. Returns its URL."""
    url = await r.fresh_database("city")
    conn = await _connect(url)
    try:
        counts = await seed_demo(conn, build_city())
        rng = random.Random(seed)
        # Severe incidents of kinds whose Severe plan closes roads: each one closes its area.
        closures = parse_plans(DEFAULT_PLANS_PATH.read_text()).road_closures()
        kinds = sorted({c.kind for c in closures if c.severity == "Severe"})
        for n in range(CLOSURES):
            centre = _random_point(rng)
            await conn.execute(
                """
                INSERT INTO incidents (kind, category, severity, status, title, location, area,
                                       opened_at, updated_at)
                VALUES ($1, 'natural_disaster', 'Severe', 'responding', $2, $3::geometry,
                        ST_Buffer($3::geometry::geography, $4)::geometry, now(), now())
                """,
                kinds[n % len(kinds)],
                f"bench closure {n}",
                centre,
                CLOSURE_RADIUS_M,
            )
        graph = await conn.fetchrow(
            """
            SELECT (SELECT count(*) FROM roads) AS edges,
                   (SELECT count(*) FROM (SELECT source FROM roads UNION SELECT target FROM roads) v)
                       AS vertices,
                   (SELECT count(*) FROM roads r WHERE EXISTS (
                        SELECT 1 FROM incidents i WHERE i.area IS NOT NULL AND ST_Intersects(r.geom, i.area)))
                       AS closed_edges
            """
        )
        assert graph is not None
        counts |= {k: int(v) for k, v in graph.items()}
    finally:
        await conn.close()
    return url, counts


async def road_eta(url: str, draws: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    closures = parse_plans(DEFAULT_PLANS_PATH.read_text()).road_closures()
    conn = await _connect(url)
    try:
        cases: list[tuple[list[BaseGeometry], BaseGeometry, list[int], int]] = []
        for _ in range(draws + WARMUP):
            origins: list[BaseGeometry] = [_random_point(rng) for _ in range(ETA_CANDIDATES)]
            destination = _random_point(rng)
            snaps = await postgis.snap(conn, [*origins, destination])  # not timed: the raw side's input
            target = snaps[-1]
            if target is None:
                raise BenchError("the demo city has no roads")
            starts = sorted({s.vertex for s in snaps[:-1] if s is not None and s.vertex != target.vertex})
            cases.append((origins, destination, starts, target.vertex))

        def ours(i: int) -> Awaitable[list[float | None]]:
            origins, destination, _, _ = cases[i]
            return postgis.travel_times(conn, origins, destination, closures=closures)

        async def raw(i: int) -> None:
            _, _, starts, target = cases[i]
            await conn.fetch(RAW_DIJKSTRA, starts, target)

        ours_ms, raw_ms, times = await _paired(draws, ours, raw)
        unreachable = sum(t is None for draw in times for t in draw)
    finally:
        await conn.close()
    return {
        "draws": draws,
        "candidates": ETA_CANDIDATES,
        "mean_start_vertices": sum(len(c[2]) for c in cases[:draws]) / draws,
        "closing_kinds": sorted({c.kind for c in closures}),
        "unreachable_share": unreachable / (draws * ETA_CANDIDATES),
        **_compare(ours_ms, raw_ms),
    }


# -- 3. whole recommendation --------------------------------------------------------------


async def _unit_vertices(conn: asyncpg.Connection) -> dict[str, int]:
    """Every positioned unit's road vertex (the raw side's input, computed once, not timed)."""
    rows = await conn.fetch("SELECT id, position FROM units WHERE position IS NOT NULL ORDER BY id")
    snaps = await postgis.snap(conn, [r["position"] for r in rows])
    return {r["id"]: s.vertex for r, s in zip(rows, snaps, strict=True) if s is not None}


async def recommendations(url: str, draws: int, seed: int, plans: Plans) -> dict[str, Any]:
    rng = random.Random(seed)
    kinds = sorted({p.kind for p in plans.plans})
    conn = await _connect(url)
    try:
        units = int(await conn.fetchval("SELECT count(*) FROM units"))
        vertices = await _unit_vertices(conn)
        incidents: list[IncidentPlace] = []
        targets: list[int] = []
        for n in range(draws + WARMUP):
            place = _random_point(rng)
            incidents.append(IncidentPlace(-1 - n, rng.choice(kinds), rng.choice(SEVERITIES), place, None))
            (snapped,) = await postgis.snap(conn, [place])
            assert snapped is not None
            targets.append(snapped.vertex)

        def ours(i: int) -> Awaitable[dict[str, Any]]:
            return recommend_for(
                conn, incidents[i], plans, now=datetime.now(UTC), position_max_age=POSITION_MAX_AGE
            )

        async def raw(i: int) -> None:
            near = await conn.fetch(RAW_KNN, incidents[i].location, MAX_CANDIDATES)
            starts = sorted({v for r in near if (v := vertices.get(r["id"])) is not None} - {targets[i]})
            if starts:  # all 50 may join the road where the incident does (as travel_times checks)
                await conn.fetch(RAW_DIJKSTRA, starts, targets[i])

        ours_ms, raw_ms, bodies = await _paired(draws, ours, raw)
        covered = [_chosen_and_needed(body) for body in bodies]
        round_trips = []
        recorder = _Recorder(conn)
        for i in range(min(draws, 20)):  # not timed: the statements one recommendation sends
            recorder.calls.clear()
            await recommend_for(
                cast(asyncpg.Connection, recorder),
                incidents[i],
                plans,
                now=datetime.now(UTC),
                position_max_age=POSITION_MAX_AGE,
            )
            round_trips.append(len(recorder.calls))
    finally:
        await conn.close()
    return {
        "units": units,
        "draws": draws,
        "round_trips": summary([float(n) for n in round_trips]),
        "chosen_units": sum(c for c, _ in covered),
        "needed_units": sum(n for _, n in covered),
        **_compare(ours_ms, raw_ms),
    }


def _chosen_and_needed(body: dict[str, Any]) -> tuple[int, int]:
    """Units a recommendation's JSON chose, and units its plan needs."""
    assignments = body.get("assignments", [])
    return sum(len(a["chosen"]) for a in assignments), sum(int(a["needed"]) for a in assignments)


# -- the run ---------------------------------------------------------------------------------


def _describe(result: dict[str, Any]) -> str:
    if "ours_ms" not in result:
        return ""
    ours, raw = result["ours_ms"], result["raw_ms"]
    return (
        f", ours p50 {fmt_ms_fine(ours['p50'])} / p99 {fmt_ms_fine(ours['p99'])} ms"
        f", raw p50 {fmt_ms_fine(raw['p50'])} / p99 {fmt_ms_fine(raw['p99'])} ms"
    )


async def _attempt(errors: list[str], what: str, step: Awaitable[dict[str, Any]]) -> dict[str, Any]:
    return await attempt(errors, what, step, _describe)


async def run(profile: Profile, keep: bool, seed: int = 4) -> dict[str, Any]:
    errors: list[str] = []
    out: dict[str, Any] = {"nearest": [], "eta": None, "recommendation": []}
    plans = parse_plans(DEFAULT_PLANS_PATH.read_text())
    async with rig(keep=keep, fleet=False) as r:
        if keep:
            progress(f"run folder (kept): {r.directory}")
        out["versions"] = await _versions(await r.fresh_database("versions"))
        for size in profile.sizes:
            out["nearest"].append(
                await _attempt(
                    errors,
                    f"nearest available unit, {size:,} units",
                    nearest(r, size, profile.queries, seed + size),
                )
            )
        progress("seeding the demo city")
        try:
            url, city = await demo_city(r, seed)
        except (BenchError, ServiceError, OSError, asyncpg.PostgresError) as exc:
            errors.append(f"seeding the demo city: {exc}")
            return out | {"errors": errors}
        out["city"] = city
        out["eta"] = await _attempt(
            errors, f"road ETA for {ETA_CANDIDATES} candidates", road_eta(url, profile.eta_draws, seed + 7)
        )
        for extra in (0, EXTRA_UNITS):
            if extra:
                progress(f"loading {extra:,} more units into the demo city")
                await load_fleet(url, extra, "X", datetime.now(UTC), seed + 13)
            out["recommendation"].append(
                await _attempt(
                    errors,
                    f"recommendation, {city['units'] + extra:,} units",
                    recommendations(url, profile.recommendations, seed + 11, plans),
                )
            )
    return out | {"errors": errors}


async def _versions(url: str) -> dict[str, str]:
    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow("SELECT postgis_lib_version() AS postgis, pgr_version() AS pgrouting")
        assert row is not None
        return {"postgis": str(row["postgis"]), "pgrouting": str(row["pgrouting"])}
    finally:
        await conn.close()


# -- report ------------------------------------------------------------------------------------


def _ms(result: dict[str, Any], side: str, key: str) -> float:
    try:
        return float(result[side][key])
    except (KeyError, TypeError):
        return math.nan


def _latency_rows(label: str, result: dict[str, Any], ours: str, raw: str) -> list[str]:
    keys = ("p50", "p90", "p99", "max")
    if "error" in result:
        return [f"| {label} | failed: {result['error'].splitlines()[0]} | | | | |"]
    rows = []
    for path, side in ((ours, "ours_ms"), (raw, "raw_ms")):
        cells = [fmt_ms_fine(_ms(result, side, k)) for k in keys]
        rows.append(f"| {label} | {path} | {' | '.join(cells)} |")
    ratios = [fmt_ratio(_ms(result, "ratio", k)) for k in keys]
    rows.append(f"| {label} | ours ÷ raw | {' | '.join(ratios)} |")
    return rows


def _goal(value: float, limit: float) -> str:
    if math.isnan(value):
        return "not measured"
    return f"{'met' if value < limit else '**missed**'} (p99 {fmt_ms_fine(value)} ms)"


def render(report: dict[str, Any]) -> str:
    profile = report["profile"]
    m = report["machine"]
    versions = report.get("versions", {})
    when = report["started"][:16].replace("T", " ")
    lines = [
        f"# Geolocation benchmark — {profile['name']} profile, {when} UTC",
        "",
        f"Command: `{report['command']}`",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory']}, Linux {m['kernel']}; Python {m['python']}; "
        f"{m['postgres']}; PostGIS {versions.get('postgis', '?')}; "
        f"pgRouting {versions.get('pgrouting', '?')}; "
        f"asyncpg {m['asyncpg']}; revision {m['revision']}. "
        f"Load average {m['load']} at the start, {report['load_end']} at the end.",
        "",
        f"All figures are milliseconds per call from one asyncpg connection. "
        f"Ours and raw run over the same draws, taking turns to go first; {WARMUP} warm-up draws each.",
        "",
        f"## 1. Nearest available unit by capability (limit {NEAREST_LIMIT}), "
        f"{profile['queries']:,} random points per size",
        "",
        "| units | path | p50 | p90 | p99 | max |",
        "|--:|---|--:|--:|--:|--:|",
    ]
    for result in report["nearest"]:
        label = f"{result['units']:,}" if "units" in result else "?"
        lines += _latency_rows(
            label, result, "ours: `nearest_available_units`", "raw: KNN `ORDER BY position <-> p`, no filter"
        )
    shorts = [f"{r['units']:,}: {r['short_results']:,}" for r in report["nearest"] if "short_results" in r]
    lines += [
        "",
        f"Draws that found fewer than {NEAREST_LIMIT} units: {'; '.join(shorts) or 'n/a'}.",
        "",
        f"Fleet: types weighted {', '.join(f'{t} {w:g}' for t, w in TYPE_WEIGHTS.items())}; "
        f"capabilities by type; {AVAILABLE_SHARE:.0%} available; "
        f"{STALE_SHARE:.0%} with a position older than the maximum age "
        f"({POSITION_MAX_AGE.total_seconds():.0f} s); {UNPOSITIONED_SHARE:.0%} never positioned. "
        "Each query asks for a capability drawn uniformly, so rare ones (hazmat, power, epidemiology) "
        "are asked as often as common ones.",
        "",
        "EXPLAIN ANALYZE of each size's slowest draw (ours, then raw at the same point):",
        "",
    ]
    for result in report["nearest"]:
        if "error" in result:
            continue
        slow = result["slowest"]
        ours_plan, raw_plan = slow["explain"]["ours"], slow["explain"]["raw"]
        cache = result.get("plan_cache")
        cache_text = (
            f"; plan cache: {cache['custom']} custom, {cache['generic']} generic plans" if cache else ""
        )
        eligible = result["eligible_by_capability"]
        lines += [
            f"- {result['units']:,} units, `{slow['capability']}` "
            f"({eligible.get(slow['capability'], 0):,} eligible units), "
            f"{fmt_ms_fine(slow['ms'])} ms in the run"
            f"{cache_text}:",
            f"  - ours ({'generic' if ours_plan.get('generic') else 'custom'} plan): "
            f"`{ours_plan['top']}`; {'; '.join(ours_plan['scans'])}; "
            f"**{ours_plan['rows_visited']:,} rows visited**",
            f"  - raw: `{raw_plan['top']}`; {'; '.join(raw_plan['scans'])}; "
            f"{raw_plan['rows_visited']:,} rows visited",
        ]
    at_goal: dict[str, Any] = next((r for r in report["nearest"] if r.get("units") == 100_000), {})
    lines += [
        "",
        f"Goal: p99 < {GOALS['nearest_p99_ms_at_100000']:g} ms at 100,000 units: "
        f"{_goal(_ms(at_goal, 'ours_ms', 'p99'), GOALS['nearest_p99_ms_at_100000'])}.",
    ]
    eta = report["eta"] or {"error": "not run"}
    city = report.get("city", {})
    lines += [
        "",
        f"## 2. Road ETA for {ETA_CANDIDATES} candidates, {profile['eta_draws']:,} random draws",
        "",
        "| candidates | path | p50 | p90 | p99 | max |",
        "|--:|---|--:|--:|--:|--:|",
        *_latency_rows(
            str(ETA_CANDIDATES),
            eta,
            "ours: `travel_times` (snap, closures, pgr_dijkstraCost)",
            "raw: one `pgr_dijkstraCost`, unfiltered roads, pre-snapped",
        ),
        "",
    ]
    if "error" not in eta:
        lines.append(
            f"Demo city road graph: {city.get('edges', '?')} edges, {city.get('vertices', '?')} vertices; "
            f"{CLOSURES} active incidents ({CLOSURE_RADIUS_M:g} m) "
            f"closing {city.get('closed_edges', '?')} edges "
            f"for the closing kinds of the shipped plans. {eta['mean_start_vertices']:.1f} distinct start "
            f"vertices per draw on average; {eta['unreachable_share']:.1%} of origins unreachable. "
            "pgr_dijkstraCost loads the whole edge query on every call, so on a real city's road "
            "table both figures grow with the number of roads, not with the candidates."
        )
        lines.append("")
    lines += [
        f"Goal: p99 < {GOALS['eta_p99_ms_for_50']:g} ms for {ETA_CANDIDATES} candidates: "
        f"{_goal(_ms(eta, 'ours_ms', 'p99'), GOALS['eta_p99_ms_for_50'])}.",
        "",
        f"## 3. Whole recommendation (`recommend_for`), "
        f"{profile['recommendations']:,} random incidents per fleet",
        "",
        "| units | path | p50 | p90 | p99 | max |",
        "|--:|---|--:|--:|--:|--:|",
    ]
    for result in report["recommendation"]:
        label = f"{result['units']:,}" if "units" in result else "?"
        lines += _latency_rows(
            label,
            result,
            "ours: `recommend_for`",
            f"raw: KNN for {MAX_CANDIDATES} + one `pgr_dijkstraCost` from their vertices",
        )
    trips = [r["round_trips"] for r in report["recommendation"] if "round_trips" in r]
    lines += [
        "",
        "Incidents: a random kind of the shipped plans and a random severity, at a random point of the city "
        "(no area). Raw: the recommendation's core without anything around it: the plain KNN for "
        f"{MAX_CANDIDATES} units, then one unfiltered `pgr_dijkstraCost` from their road vertices "
        "(snapped beforehand) to the incident's.",
    ]
    if trips:
        lines[-1] += (
            f" Ours makes {trips[0]['p50']:.0f} queries per recommendation (median; "
            f"{trips[0]['max']:.0f} at most)."
        )
    for result in report["recommendation"]:
        if "chosen_units" in result:
            lines[-1] += (
                f" With {result['units']:,} units it chose {result['chosen_units']:,} of the "
                f"{result['needed_units']:,} units the plans needed."
            )
    if report["errors"]:
        lines += ["", "## Errors", ""] + [f"- {e.splitlines()[0]}" for e in report["errors"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None, *, prog: str = "python -m bench.geo") -> int:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Geolocation benchmark beside raw baselines: nearest unit, road ETA, recommendation.",
    )
    p.add_argument(
        "--quick",
        action="store_const",
        const="quick",
        dest="profile",
        help="300 query points per fleet size, 50 draws elsewhere: under a minute",
    )
    p.add_argument("--keep", action="store_true", help="keep the run folder (service data and logs)")
    p.add_argument("--no-save", action="store_true", help="print only; write nothing under bench/results/")
    args = p.parse_args(argv)
    profile = PROFILES[args.profile or "default"]

    started = datetime.now(UTC)
    machine = machine_info()
    progress(f"geo: {profile.name} profile; {machine['nproc']} CPUs")
    try:
        outcome = asyncio.run(_stoppable(run(profile, args.keep)))
    except (KeyboardInterrupt, asyncio.CancelledError):
        progress("interrupted: the run's PostgreSQL was stopped; nothing written")
        return 130
    report = {
        "benchmark": "geo",
        "command": " ".join([prog, *(argv if argv is not None else sys.argv[1:])]),
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_end": load_average(),
        "profile": asdict(profile),
        "machine": machine,
        "goals": GOALS,
        **outcome,
    }
    markdown = render(report)
    print(markdown, end="")
    if not args.no_save:
        save_results("geo", started, profile.name, report, markdown)
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
